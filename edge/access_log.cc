#include "edge/access_log.hh"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>

#include "common/json.hh"
#include "edge/prom_text.hh"

namespace edge {
namespace {

void field(std::string& out, const char* name) {
  if (out.size() > 1) out += ',';
  out += '"';
  out += name;
  out += "\":";
}

void str_field(std::string& out, const char* name, const char* v) {
  field(out, name);
  if (*v == '\0')
    out += "null";
  else
    common::json_string(out, v);
}

// Envoy's durations are whole milliseconds.
void ms_field(std::string& out, const char* name, int64_t us) {
  field(out, name);
  out += us < 0 ? "null" : std::to_string(us / 1000);
}

std::string addr(const l4::ip_addr& a, uint16_t port) {
  return (a.v6 ? "[" + a.str() + "]" : a.str()) + ":" + std::to_string(port);
}

std::string rfc3339(uint64_t unix_us) {
  const std::time_t s = static_cast<std::time_t>(unix_us / 1000000);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char b[40];
  const size_t n = std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(b + n, sizeof b - n, ".%03uZ", static_cast<unsigned>(unix_us / 1000 % 1000));
  return b;
}

// Envoy's response flags for the ends that have one.
const char* response_flags(const access_record& r) {
  const std::string_view e = r.end_reason;
  if (e == "connect_failed" || e == "connect_timeout") return "UF";
  if (e == "no_upstream") return "UH";
  if (e == "upstream_reset") return "UC";
  if (e == "client_reset" || e == "client_timeout" || e == "client_data_after_close" ||
      e == "tls_handshake_aborted")
    return "DC";
  if (e == "service_limit" || r.limit == access_limit::limited) return "UO";
  if (e == "no_service") return "NR";
  if (e == "waf_blocked") return "DI";
  return "-";
}

const char* waf_name(access_waf w) {
  static constexpr const char* texts[] = {EDGE_ACCESS_WAF(COMMON_ENUM_TEXT)};
  return common::enum_text(w, texts, "");
}

const char* limit_name(access_limit l) {
  static constexpr const char* texts[] = {EDGE_ACCESS_LIMIT(COMMON_ENUM_TEXT)};
  return common::enum_text(l, texts, "");
}

}  // namespace

std::string format_access_json(const access_record& r) {
  std::string out = "{";
  str_field(out, "start_time",
            rfc3339(r.start_unix_us != 0 ? r.start_unix_us : r.end_unix_us).c_str());
  if (r.request) {  // Envoy's HTTP fields
    str_field(out, "method", r.req.method.data());
    str_field(out, "path", r.req.path.data());
    str_field(out, "protocol",
              r.req.minor_version == 0   ? "HTTP/1.0"
              : r.req.minor_version == 1 ? "HTTP/1.1"
                                         : "");
    field(out, "response_code");
    out += r.response_code == 0 ? "null" : std::to_string(r.response_code);
    str_field(out, "authority", r.req.authority.data());
    str_field(out, "user_agent", r.req.user_agent.data());
    str_field(out, "request_id", r.req.request_id.data());
  }
  str_field(out, "downstream_remote_address", addr(r.client, r.client_port).c_str());
  str_field(out, "downstream_local_address", addr(r.vip, r.vip_port).c_str());
  str_field(out, "requested_server_name", r.sni.data());
  str_field(out, "downstream_tls_version", r.tls_version.data());
  str_field(out, "downstream_tls_cipher", r.tls_cipher.data());
  str_field(out, "route_name", r.service.data());
  str_field(out, "upstream_cluster", r.pool.data());
  str_field(out, "upstream_host", r.has_upstream ? addr(r.upstream, r.upstream_port).c_str() : "");
  field(out, "bytes_received");
  out += r.bytes_received < 0 ? "null" : std::to_string(r.bytes_received);
  field(out, "bytes_sent");
  out += r.bytes_sent < 0 ? "null" : std::to_string(r.bytes_sent);
  ms_field(out, "duration", r.duration_us);
  ms_field(out, "downstream_handshake_duration", r.handshake_us);
  ms_field(out, "upstream_connection_pool_ready_duration", r.upstream_connect_us);
  ms_field(out, "response_duration", r.first_byte_us);
  str_field(out, "response_flags", response_flags(r));
  str_field(out, "connection_termination_details", r.end_reason);
  str_field(out, "waf_action", waf_name(r.waf));
  str_field(out, "ratelimit_action", limit_name(r.limit));
  field(out, "worker");
  out += std::to_string(r.worker);
  out += '}';
  return out;
}

access_ring::access_ring(size_t capacity_pow2) {
  size_t cap = 16;
  while (cap < capacity_pow2 && cap < (1u << 20)) cap <<= 1;
  slots_ = std::make_unique<access_record[]>(cap);
  mask_ = cap - 1;
}

bool access_ring::push(const access_record& r) {
  const uint64_t head = head_.load(std::memory_order_relaxed);
  if (head - tail_.load(std::memory_order_acquire) > mask_) {
    full_.store(full_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return false;
  }
  slots_[head & mask_] = r;
  head_.store(head + 1, std::memory_order_release);
  pushed_.store(pushed_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  return true;
}

size_t access_ring::pop(access_record* out, size_t max) {
  const uint64_t tail = tail_.load(std::memory_order_relaxed);
  const uint64_t head = head_.load(std::memory_order_acquire);
  size_t n = 0;
  for (; n < max && tail + n < head; ++n) out[n] = slots_[(tail + n) & mask_];
  tail_.store(tail + n, std::memory_order_release);
  return n;
}

common::result<std::unique_ptr<access_log>> access_log::open(const std::string& target) {
  std::unique_ptr<access_log> log(new access_log());
  log->target_ = target;
  if (target == "stdout") {
    log->is_stdout_ = true;
    log->fd_ = STDOUT_FILENO;
    return log;
  }
  log->fd_ = ::open(target.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (log->fd_ < 0)
    return common::fail(std::string("cannot open the access log: ") + strerror(errno), target);
  return log;
}

access_log::~access_log() {
  stop();
  if (fd_ >= 0 && !is_stdout_) close(fd_);
}

access_ring* access_log::add_ring(size_t capacity_pow2) {
  rings_.push_back(std::make_unique<access_ring>(capacity_pow2));
  return rings_.back().get();
}

void access_log::start() {
  thread_ = std::thread([this] {
    while (!stop_.load(std::memory_order_relaxed)) {
      flush_once();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
}

void access_log::stop() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
  flush_once();
}

void access_log::reopen() {
  if (is_stdout_) return;
  const int fd = ::open(target_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    reopen_errors_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  close(fd_);
  fd_ = fd;
  reopens_.fetch_add(1, std::memory_order_relaxed);
}

void access_log::flush_once() {
  std::lock_guard lock(flush_mu_);
  // Lines already taken from the rings go to the file they were taken for; the reopen comes
  // between two rounds, so no line is lost or split across a rotation.
  if (reopen_.exchange(false, std::memory_order_relaxed)) reopen();
  static constexpr size_t batch = 256;
  access_record recs[batch];
  std::string buf;
  uint64_t lines = 0;
  for (auto& ring : rings_) {
    // At most 64 batches a ring a round, so that a producer faster than the formatting cannot
    // keep one round going and hold back a requested reopen (rotation) indefinitely.
    size_t n = 0;
    for (int k = 0; k < 64 && (n = ring->pop(recs, batch)) != 0; ++k) {
      for (size_t i = 0; i < n; ++i) {
        buf += format_access_json(recs[i]);
        buf += '\n';
      }
      lines += n;
      if (buf.size() < (1u << 20)) continue;
      if (::write(fd_, buf.data(), buf.size()) != static_cast<ssize_t>(buf.size()))
        write_errors_.fetch_add(1, std::memory_order_relaxed);
      buf.clear();
    }
  }
  if (!buf.empty() && ::write(fd_, buf.data(), buf.size()) != static_cast<ssize_t>(buf.size()))
    write_errors_.fetch_add(1, std::memory_order_relaxed);
  lines_.fetch_add(lines, std::memory_order_relaxed);
}

uint64_t access_log::full_drops() const {
  uint64_t n = 0;
  for (const auto& r : rings_) n += r->full_drops();
  return n;
}

void access_log::append_metrics(prom_text::writer& out) const {
#define EDGE_ACCESS_LOG_TEXT(member, name, help) \
  out.family(name, "counter", help);             \
  out.sample(member());
  EDGE_ACCESS_LOG_COUNTERS(EDGE_ACCESS_LOG_TEXT)
#undef EDGE_ACCESS_LOG_TEXT
  out.family(
      "edge_access_log_ring_full_total", "counter",
      "Access log records dropped because a worker's ring was full (the worker never waits).");
  out.sample(full_drops());
  uint64_t unlogged = 0;
  for (const auto& r : rings_) unlogged += r->unlogged();
  out.family("edge_access_log_requests_unlogged_total", "counter",
             "Pipelined requests that got no access log line: more than 4 were waiting for their "
             "responses on one connection.");
  out.sample(unlogged);
}

}  // namespace edge
