#include "waf_audit.hh"

#include <arpa/inet.h>
#include <spdlog/logger.h>
#include <spdlog/sinks/basic_file_sink.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>

#include "common/json.hh"

namespace edge {

waf_endpoint waf_endpoint::v4(std::array<uint8_t, 4> a, uint16_t port) {
  waf_endpoint e;
  e.family = 4;
  e.port = port;
  std::copy(a.begin(), a.end(), e.addr.begin());
  return e;
}

waf_endpoint waf_endpoint::v6(std::array<uint8_t, 16> a, uint16_t port) {
  waf_endpoint e;
  e.family = 6;
  e.port = port;
  e.addr = a;
  return e;
}

std::string waf_endpoint::str() const {
  char buf[INET6_ADDRSTRLEN + 1] = {};
  if (family == 4) {
    inet_ntop(AF_INET, addr.data(), buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(port);
  }
  if (family == 6) {
    inet_ntop(AF_INET6, addr.data(), buf, sizeof buf);
    return "[" + std::string(buf) + "]:" + std::to_string(port);
  }
  return "-";
}

const char* to_string(waf_audit_verdict v) {
  return v == waf_audit_verdict::block ? "block" : "detect";
}

uint8_t copy_bounded(std::string_view s, char* dst, size_t cap) {
  size_t n = std::min(s.size(), cap);
  if (n > 0) std::memcpy(dst, s.data(), n);  // an empty view may carry a null data()
  return static_cast<uint8_t>(n);
}

// Excerpts are attacker-controlled bytes: json_string escapes everything that is not printable
// ASCII, so the audit log stays one valid JSON line per record whatever was sent.
using common::json_string;

std::string waf_audit_json(const waf_audit_record& r, std::string_view message) {
  std::string o;
  o.reserve(512);
  o += "{\"ts_ms\":" + std::to_string(r.unix_ms);
  o += ",\"request_id\":";
  json_string(o, r.request_id_text());
  o += ",\"service\":";
  json_string(o, r.service_name());
  o += ",\"client\":";
  json_string(o, r.client.str());
  o += ",\"vip\":";
  json_string(o, r.vip.str());
  o += ",\"verdict\":\"";
  o += to_string(r.verdict);
  o += "\",\"status\":" + std::to_string(r.status);
  o += ",\"detect_only\":";
  o += r.detect_only ? "true" : "false";
  o += ",\"raw\":";
  o += r.raw ? "true" : "false";
  o += ",\"rule_id\":" + std::to_string(r.rule_id);
  o += ",\"message\":";
  json_string(o, message);
  o += ",\"variable\":\"";
  o += r.rule_id == 0 ? "protocol" : waf::to_string(r.where);
  o += "\",\"field\":";
  json_string(o, r.field_name());
  o += ",\"excerpt\":";
  json_string(o, r.excerpt_text());
  o += ",\"path\":";
  json_string(o, r.path_text());
  o += ",\"severity\":" + std::to_string(r.severity);
  o += ",\"score\":" + std::to_string(r.score);
  o += ",\"anomaly_score\":" + std::to_string(r.anomaly_score);
  o += ",\"blocking\":";
  o += r.blocking ? "true" : "false";
  if (r.confirm_error) o += ",\"confirm_error\":true";
  o += '}';
  return o;
}

waf_audit_ring::waf_audit_ring(size_t capacity) {
  size_t cap = std::bit_ceil(std::max<size_t>(capacity, 2));
  slots_ = std::make_unique<waf_audit_record[]>(cap);
  mask_ = cap - 1;
}

bool waf_audit_ring::push(const waf_audit_record& r) {
  uint64_t h = head_.load(std::memory_order_relaxed);
  if (h - tail_.load(std::memory_order_acquire) > mask_) {
    dropped_.add();
    return false;
  }
  slots_[h & mask_] = r;
  head_.store(h + 1, std::memory_order_release);
  pushed_.add();
  return true;
}

size_t waf_audit_ring::pop(std::span<waf_audit_record> out) {
  uint64_t t = tail_.load(std::memory_order_relaxed);
  uint64_t h = head_.load(std::memory_order_acquire);
  size_t n = std::min<uint64_t>(h - t, out.size());
  for (size_t i = 0; i < n; ++i) out[i] = slots_[(t + i) & mask_];
  tail_.store(t + n, std::memory_order_release);
  return n;
}

common::result<std::unique_ptr<waf_audit_drainer>> waf_audit_drainer::create(
    const std::string& path) {
  if (path.empty()) return common::fail("audit log path is empty");
  std::unique_ptr<waf_audit_drainer> d(new waf_audit_drainer());
  try {
    auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, false);
    // Not registered globally: several appliances (tests) may each own one.
    d->log_ = std::make_shared<spdlog::logger>("waf_audit", std::move(sink));
    d->log_->set_pattern("%v");
    d->log_->set_level(spdlog::level::info);
  } catch (const std::exception& e) {
    return common::fail(std::string("cannot open audit log: ") + e.what(), path);
  }
  return d;
}

waf_audit_drainer::~waf_audit_drainer() {
  stop();
}

void waf_audit_drainer::set_rule_messages(std::map<uint32_t, std::string> messages) {
  std::lock_guard lk(mu_);
  messages_ = std::move(messages);
}

void waf_audit_drainer::add_ring(waf_audit_ring* ring) {
  std::lock_guard lk(mu_);
  rings_.push_back(ring);
}

void waf_audit_drainer::remove_ring(waf_audit_ring* ring) {
  std::lock_guard lk(mu_);
  std::erase(rings_, ring);
}

size_t waf_audit_drainer::drain_once() {
  std::array<waf_audit_record, 64> batch;
  size_t total = 0;
  std::lock_guard lk(mu_);
  for (auto* r : rings_) {
    for (;;) {
      size_t n = r->pop(batch);
      for (size_t i = 0; i < n; ++i) {
        const auto m = messages_.find(batch[i].rule_id);
        log_->info(waf_audit_json(batch[i], m == messages_.end() ? std::string_view() : m->second));
        ++hits_[{std::string(batch[i].service_name()), batch[i].rule_id, batch[i].verdict}];
      }
      total += n;
      if (n < batch.size()) break;
    }
  }
  if (total > 0) log_->flush();
  written_.fetch_add(total, std::memory_order_relaxed);
  return total;
}

std::vector<waf_audit_drainer::rule_hit> waf_audit_drainer::rule_hits() const {
  std::lock_guard lk(mu_);
  std::vector<rule_hit> out;
  out.reserve(hits_.size());
  for (const auto& [k, n] : hits_)
    out.push_back({std::get<0>(k), std::get<1>(k), std::get<2>(k), n});
  return out;
}

std::vector<const waf_audit_ring*> waf_audit_drainer::rings() const {
  std::lock_guard lk(mu_);
  return {rings_.begin(), rings_.end()};
}

void waf_audit_drainer::start(std::chrono::milliseconds period) {
  if (thread_.joinable()) return;
  stop_.store(false);
  thread_ = std::thread([this, period] {
    while (!stop_.load(std::memory_order_relaxed)) {
      drain_once();
      std::this_thread::sleep_for(period);
    }
  });
}

void waf_audit_drainer::stop() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
  if (log_) drain_once();
}

}  // namespace edge
