#include "waf_conn.hh"

#include "edge/limits_hook.hh"

#include <rte_cycles.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <new>
#include <random>

namespace edge {

namespace {

// 429 Too Many Requests with Retry-After (RFC 6585 §4), in the style of the WAF's block responses.
size_t format_429(unsigned retry_after_s, std::string_view request_id, std::span<char> out) {
  char body[128];
  const int rid_len = static_cast<int>(std::min<size_t>(request_id.size(), 64));
  const int bl = std::snprintf(body, sizeof body, "429 Too Many Requests: request %.*s\n", rid_len,
                               request_id.data());
  if (bl < 0) return 0;
  const int n = std::snprintf(
      out.data(), out.size(),
      "HTTP/1.1 429 Too Many Requests\r\nRetry-After: %u\r\nContent-Type: text/plain\r\n"
      "Content-Length: %d\r\nX-Request-Id: %.*s\r\nConnection: close\r\n"
      "Cache-Control: no-store\r\n\r\n%s",
      retry_after_s, bl, rid_len, request_id.data(), body);
  if (n < 0 || static_cast<size_t>(n) >= out.size()) return 0;
  return static_cast<size_t>(n);
}

}  // namespace

common::result<std::unique_ptr<waf_worker>> waf_worker::create(uint16_t worker_id,
                                                               const waf::ruleset& rs,
                                                               waf_audit_ring* ring) {
  auto ws = waf::worker_scratch::create(rs);
  if (!ws) return common::unexpected(ws.error());
  std::unique_ptr<waf_worker> w(new waf_worker(worker_id, std::move(*ws), ring));
  // Start the sequence at a random point so that request ids do not repeat across restarts (they
  // correlate client-visible responses with audit lines kept for longer than one run).
  std::random_device rd;
  w->seq_ = ((uint64_t{rd()} << 32) | rd()) & 0xffff'ffff'ffffULL;
  return w;
}

uint16_t waf_worker::service_slot(std::string_view name) {
  const size_t n = n_services_.load(std::memory_order_relaxed);  // the worker is the only writer
  for (size_t i = 0; i < n; ++i)
    if (services_[i].name == name) return static_cast<uint16_t>(i);
  if (n == max_services) {
    services_full_.add();
    return no_service;
  }
  services_[n].name.assign(name);
  n_services_.store(n + 1, std::memory_order_release);
  return static_cast<uint16_t>(n);
}

void waf_rule_counts::add(uint16_t service, uint32_t rule_id) {
  const uint64_t key = (uint64_t{service} + 1) << 32 | rule_id;
  size_t i = static_cast<size_t>((key * 0x9e3779b97f4a7c15ULL) >> 40) & (capacity - 1);
  for (size_t probes = 0; probes < capacity; ++probes, i = (i + 1) & (capacity - 1)) {
    const uint64_t k = slots_[i].key.load(std::memory_order_relaxed);
    if (k == key) {
      slots_[i].n.add();
      return;
    }
    if (k == 0) {
      slots_[i].n.add();  // the count before the key: a reader that sees the key sees it
      slots_[i].key.store(key, std::memory_order_release);
      return;
    }
  }
  full_.add();
}

size_t waf_worker::next_request_id(std::span<char, 16> out) {
  static constexpr char hex[] = "0123456789abcdef";
  uint64_t v = (uint64_t{id_} << 48) | (seq_++ & 0xffff'ffff'ffffULL);
  for (int i = 15; i >= 0; --i, v >>= 4) out[static_cast<size_t>(i)] = hex[v & 0xf];
  return 16;
}

common::result<waf_conn> waf_conn::create(waf_worker& w,
                                          std::shared_ptr<const waf::bound_policy> pol,
                                          waf::inspector::mode m, const waf_conn_info& info) {
  if (!pol) return common::fail("waf_conn: no policy");
  auto in = waf::inspector::create(std::move(pol), w.scratch(), m);
  if (!in) return common::unexpected(in.error());
  waf_conn c;
  c.w_ = &w;
  c.in_ = std::move(*in);
  c.mode_ = m;
  c.client_ = info.client;
  c.vip_ = info.vip;
  c.service_len_ = copy_bounded(info.service, c.service_.data(), c.service_.size());
  c.svc_ = w.service_slot(info.service);
  if (info.limits && m == waf::inspector::mode::http) {
    const limits::service_limits* sl = info.limits->service(info.service);
    if (sl != nullptr && !sl->request.empty()) {
      c.limits_ = info.limits;
      c.lim_svc_ = sl;
      c.flow_ = info.flow;
    }
  }
  if (m == waf::inspector::mode::raw)
    c.count(&waf_service_stats::inspected);  // a raw stream is one unit
  if (info.log_requests && m == waf::inspector::mode::http) {
    c.reqlog_.reset(new (std::nothrow) request_log());
    if (!c.reqlog_) return common::fail("waf_conn: no memory for the request log");
  }
  return c;
}

void waf_conn::note_bytes(size_t n) {
  if (!reqlog_ || n == 0) return;
  if (req_bytes_ == 0) {  // the request's first byte
    req_start_ns_ = clock_now_ns(CLOCK_MONOTONIC);
    req_start_unix_us_ = clock_now_ns(CLOCK_REALTIME) / 1000;
  }
  req_bytes_ += n;
  if (request_note* r = note_current()) r->bytes_in = req_bytes_;
}

void waf_conn::note_head() {
  if (!reqlog_ || req_noted_) return;
  request_note* r = reqlog_->begin();
  if (r == nullptr) return;  // too many waiting: this one goes unlogged (counted)
  req_noted_ = true;
  const waf::request_head& h = in_->head();
  r->start_ns = req_start_ns_ != 0 ? req_start_ns_ : clock_now_ns(CLOCK_MONOTONIC);
  r->start_unix_us =
      req_start_unix_us_ != 0 ? req_start_unix_us_ : clock_now_ns(CLOCK_REALTIME) / 1000;
  r->bytes_in = req_bytes_;
  r->head_method = h.method == "HEAD";
  r->minor_version = h.minor_version;
  copy_cut(r->method, h.method);
  copy_cut(r->path, h.target);
  copy_cut(r->authority, h.header("host"));
  copy_cut(r->user_agent, h.header("user-agent"));
  copy_cut(r->request_id, request_id());
  if (lim_svc_ != nullptr) r->limit = access_limit::pass;
}

request_note* waf_conn::note_for_block() {
  // Noted already (null: its response came and its line is written), or a WebSocket tunnel's
  // frame, which is no request: no new note.
  if (!reqlog_ || in_->tunnel_open()) return nullptr;
  if (req_noted_) return note_current();
  request_note* r = reqlog_->begin();  // refused before its head parsed (400, 431, 413)
  if (r == nullptr) return nullptr;
  req_noted_ = true;
  r->start_ns = req_start_ns_ != 0 ? req_start_ns_ : clock_now_ns(CLOCK_MONOTONIC);
  r->start_unix_us =
      req_start_unix_us_ != 0 ? req_start_unix_us_ : clock_now_ns(CLOCK_REALTIME) / 1000;
  r->bytes_in = req_bytes_;
  copy_cut(r->request_id, request_id());
  return r;
}

common::result<waf_conn> waf_conn::create(waf_worker& w,
                                          std::shared_ptr<const waf::bound_policy> pol,
                                          const waf_conn_info& info) {
  if (!pol) return common::fail("waf_conn: no policy");
  const auto m = pol->pol().inspect == waf::inspect_mode::raw ? waf::inspector::mode::raw
                                                              : waf::inspector::mode::http;
  return create(w, std::move(pol), m, info);
}

std::string_view waf_conn::request_id() {
  if (!rid_fresh_) {
    rid_len_ = static_cast<uint8_t>(w_->next_request_id(std::span<char, 16>(rid_.data(), 16)));
    rid_fresh_ = true;
  }
  return {rid_.data(), rid_len_};
}

void waf_conn::end_request() {
  rid_fresh_ = false;
  audited_ = 0;
  req_noted_ = false;
  req_bytes_ = 0;
  req_start_ns_ = req_start_unix_us_ = 0;
}

void waf_conn::fill_common(waf_audit_record& r, waf_audit_verdict verdict, uint16_t status) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);  // vDSO: no syscall on the data path
  r.unix_ms =
      static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1'000'000;
  r.verdict = verdict;
  r.status = status;
  r.raw = mode_ == waf::inspector::mode::raw;
  r.detect_only = in_->detect_only();
  r.anomaly_score = in_->anomaly_score();
  auto id = request_id();
  r.request_id_len = copy_bounded(id, r.request_id, sizeof r.request_id);
  r.service_len = copy_bounded({service_.data(), service_len_}, r.service, sizeof r.service);
  if (!r.raw) r.path_len = copy_bounded(in_->head().path, r.path, sizeof r.path);
  r.client = client_;
  r.vip = vip_;
}

void waf_conn::audit_new_matches(waf_audit_verdict verdict, uint16_t status) {
  auto ms = in_->matches();
  if (audited_ >= ms.size()) return;
  if (svc_ != waf_worker::no_service)
    for (size_t i = audited_; i < ms.size(); ++i) w_->rule_counts_.add(svc_, ms[i].rule_id);
  waf_audit_ring* ring = w_->ring();
  for (size_t i = audited_; i < ms.size(); ++i) {
    const waf::audit_match& m = ms[i];
    if (ring == nullptr) break;
    waf_audit_record r;
    fill_common(r, verdict, status);
    r.rule_id = m.rule_id;
    r.where = m.where;
    r.score = m.score;
    r.severity = m.severity;
    r.blocking = m.blocking;
    r.confirm_error = m.confirm_error;
    r.field_len = copy_bounded(m.field_name(), r.field, sizeof r.field);
    r.excerpt_len = copy_bounded(m.excerpt_text(), r.excerpt, sizeof r.excerpt);
    ring->push(r);  // a full ring counts the drop itself
  }
  audited_ = ms.size();
  if (in_->matches_dropped() > 0) w_->audit_truncated_.add(in_->matches_dropped());
}

// A request refused by the parser or the body limit fired no rule; the audit log still says why.
void waf_conn::audit_parse_error(uint16_t status) {
  if (w_->ring() == nullptr) return;
  waf_audit_record r;
  fill_common(r, waf_audit_verdict::block, status);
  r.rule_id = 0;
  waf::http_error e = in_->parse_error();
  std::string_view why = e != waf::http_error::none ? waf::to_string(e)
                         : in_->body_parse_error() != waf::body_error::none && status == 400
                             ? waf::to_string(in_->body_parse_error())
                         : status == 413       ? "body_limit"
                         : in_->engine_error() ? "engine_error"
                                               : "blocked";
  r.field_len = copy_bounded(why, r.field, sizeof r.field);
  w_->ring()->push(r);
}

waf_action waf_conn::on_block(const waf::verdict& v, size_t consumed) {
  set_pending(0, consumed);  // nothing more goes upstream
  waf_action a;
  a.what = waf_action::kind::block;
  a.consumed = consumed;
  a.status = v.status;
  if (!blocked_) {
    blocked_ = true;
    status_ = v.status;
    if (mode_ == waf::inspector::mode::http) count(&waf_service_stats::inspected);
    count(&waf_service_stats::blocked);
    if (in_->matches().size() == audited_)
      audit_parse_error(v.status);
    else
      audit_new_matches(waf_audit_verdict::block, v.status);
    if (mode_ == waf::inspector::mode::http)
      response_len_ = waf::format_block_response(v.status, request_id(), response_);
    if (request_note* r = note_for_block()) {
      r->waf = access_waf::block;
      r->status = v.status;
      r->bytes_out = response_len_;
    }
  }
  a.status = status_;
  if (mode_ == waf::inspector::mode::raw || limit_reset_)
    a.reset = true;
  else
    a.response = {response_.data(), response_len_};
  return a;
}

waf_action waf_conn::on_limit(const limits::decision& d, size_t consumed) {
  set_pending(0, consumed);  // the head that completed goes no further
  blocked_ = true;
  limited_ = true;
  limit_reset_ = d.act != limits::action::http_429;
  status_ = limit_reset_ ? 0 : 429;
  // The audit line names the limit: rule_id 0, field "limit:NAME".
  if (waf_audit_ring* ring = w_->ring()) {
    waf_audit_record r;
    fill_common(r, waf_audit_verdict::block, status_);
    r.rule_id = 0;
    std::array<char, waf_audit_record::field_cap> f{};
    const std::string_view name = d.by->spec.name;
    const size_t n = std::min(name.size(), f.size() - 6);
    std::memcpy(f.data(), "limit:", 6);
    std::memcpy(f.data() + 6, name.data(), n);
    r.field_len = copy_bounded({f.data(), 6 + n}, r.field, sizeof r.field);
    ring->push(r);
  }
  if (request_note* r = note_current()) r->limit = access_limit::limited;
  waf_action a;
  a.what = waf_action::kind::block;
  a.consumed = consumed;
  a.status = status_;
  if (limit_reset_) {
    a.reset = true;
    return a;
  }
  response_len_ = format_429(d.retry_after_s(), request_id(), response_);
  a.response = {response_.data(), response_len_};
  if (request_note* r = note_current()) {
    r->status = 429;
    r->bytes_out = response_len_;
  }
  return a;
}

waf_action waf_conn::feed(std::span<const char> data) {
  waf_action a;
  if (blocked_) return on_block(waf::verdict{}, 0);
  size_t n = 0;
  std::span<const char> d = data;
  while (!d.empty() && n < max_spans) {
    waf::verdict v = in_->feed(w_->scratch(), w_->stats(), d);
    note_bytes(v.consumed);
    if (v.head_complete) note_head();
    if (v.kind == waf::verdict_kind::block) return on_block(v, a.consumed + v.consumed);
    if (v.head_complete && lim_svc_ != nullptr) {
      const waf::request_head& h = in_->head();
      const limits::request_info ri{
          .method = h.method,
          .path = h.path,
          .sni = {sni_.data(), sni_len_},
          .header =
              [](const void* head, std::string_view name) {
                return static_cast<const waf::request_head*>(head)->header(name);
              },
          .ctx = &h};
      const limits::decision ld =
          limits::limit_set::check_request(*lim_svc_, flow_, ri, limits_now(rte_rdtsc()), w_->id());
      if (ld.what == limits::outcome::limited) return on_limit(ld, a.consumed + v.consumed);
    }
    if (!v.forward.empty()) spans_[n++] = v.forward;
    a.consumed += v.consumed;
    d = d.subspan(v.consumed);
    if (mode_ == waf::inspector::mode::raw) {
      // A raw stream has no request boundary: log each match as it fires.
      if (v.kind == waf::verdict_kind::detect) {
        audit_new_matches(waf_audit_verdict::detect, 0);
        if (!raw_detected_) count(&waf_service_stats::detected);
        raw_detected_ = true;
      }
      continue;
    }
    if (v.request_complete) {
      count(&waf_service_stats::inspected);
      if (v.kind == waf::verdict_kind::detect) count(&waf_service_stats::detected);
      if (request_note* r = note_current(); r != nullptr && v.kind == waf::verdict_kind::detect)
        r->waf = access_waf::detect;
      audit_new_matches(waf_audit_verdict::detect, 0);
      end_request();
      break;  // the next request's head reuses the buffer the head span points into
    }
    if (v.consumed == 0) break;  // no progress: let the caller come back with more bytes
  }
  a.forward = {spans_.data(), n};
  a.what = n > 0 ? waf_action::kind::forward : waf_action::kind::need_more;
  set_pending(n, a.consumed);
  return a;
}

void waf_conn::set_pending(size_t n, size_t consumed) {
  fwd_n_ = n;
  fwd_i_ = fwd_off_ = 0;
  consumed_ = consumed;
  while (fwd_i_ < fwd_n_ && spans_[fwd_i_].empty()) ++fwd_i_;
}

void waf_conn::sent(size_t n) {
  while (n > 0 && fwd_i_ < fwd_n_) {
    size_t left = spans_[fwd_i_].size() - fwd_off_;
    size_t k = std::min(n, left);
    fwd_off_ += k;
    n -= k;
    if (fwd_off_ == spans_[fwd_i_].size()) {
      ++fwd_i_;
      fwd_off_ = 0;
    }
  }
  while (fwd_i_ < fwd_n_ && spans_[fwd_i_].empty()) ++fwd_i_;
}

size_t waf_conn::take_consumed() {
  if (fwd_i_ < fwd_n_) return 0;  // spans still point into those bytes
  size_t c = consumed_;
  consumed_ = 0;
  return c;
}

bool waf_conn::upstream_answer(std::span<const char> head, bool last) {
  if (!in_->awaiting_upgrade()) return true;
  if (head.size() < 12 && !last) return false;
  unsigned status = 0;
  const std::string_view h(head.data(), std::min<size_t>(head.size(), 12));
  if (h.size() == 12 && h.substr(0, 7) == "HTTP/1." && h[8] == ' ')
    for (char c : h.substr(9, 3))
      status = c >= '0' && c <= '9' ? status * 10 + unsigned(c - '0') : 1000;
  in_->upgrade_response(w_->stats(), status);
  return true;
}

waf_action waf_conn::finish() {
  waf_action a;
  if (blocked_) return on_block(waf::verdict{}, 0);
  waf::verdict v = in_->finish(w_->scratch(), w_->stats());
  if (v.kind == waf::verdict_kind::block) return on_block(v, 0);
  if (v.kind == waf::verdict_kind::detect && mode_ == waf::inspector::mode::raw && !raw_detected_) {
    raw_detected_ = true;  // end-of-stream rules fired
    count(&waf_service_stats::detected);
  }
  audit_new_matches(waf_audit_verdict::detect, 0);
  end_request();
  size_t n = 0;
  if (!v.forward.empty()) {
    spans_[n++] = v.forward;
    a.forward = {spans_.data(), 1};
    a.what = waf_action::kind::forward;
  }
  set_pending(n, 0);
  return a;
}

}  // namespace edge
