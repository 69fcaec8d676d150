// The relay's one access-log call: at a connection's end (relay::release), what the relay knows
// of it becomes an access_record in the worker's ring. No allocation, no lock, no syscall but the
// clock: a full ring drops the record (counted).
#include <ctime>

#include "edge/relay.hh"
#include "tls/session.hh"

namespace edge {

namespace {

uint64_t now_ns(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

void relay::set_access_ring(access_ring* r) {
  alog_ = r;
  alog_start_ = r != nullptr ? std::make_unique<access_start[]>(n_slots_) : nullptr;
}

void relay::log_accept(const conn& rc, const l4::tcp::conn_info& info) {
  const size_t slot = static_cast<size_t>(&rc - slots_.get());
  if (slot >= n_slots_) return;
  access_start& a = alog_start_[slot];
  a.client = info.remote;
  a.client_port = info.remote_port;
  a.vip = info.local;
  a.vip_port = info.local_port;
  a.listener = info.listener;
  a.start_unix_us = now_ns(CLOCK_REALTIME) / 1000;
  a.start_ns = now_ns(CLOCK_MONOTONIC);
}

void relay::log_access(const conn& rc) {
  access_record r;
  r.end_unix_us = now_ns(CLOCK_REALTIME) / 1000;
  const size_t slot = static_cast<size_t>(&rc - slots_.get());
  if (slot < n_slots_ && alog_start_[slot].start_ns != 0) {
    access_start& a = alog_start_[slot];
    r.client = a.client;
    r.client_port = a.client_port;
    r.vip = a.vip;
    r.vip_port = a.vip_port;
    r.start_unix_us = a.start_unix_us;
    r.duration_us = static_cast<int64_t>((now_ns(CLOCK_MONOTONIC) - a.start_ns) / 1000);
    if (a.listener < services_.size()) {
      r.set(r.service, services_[a.listener].name);
      if (services_[a.listener].pool != nullptr)
        r.set(r.pool, services_[a.listener].pool->spec().name);
    }
    a = access_start{};  // the slot's next connection starts clean
  }
  r.worker = static_cast<uint16_t>(worker_);
  r.end_reason =
      ctr_.last_end < relay_end::count_ ? relay_end_names[static_cast<size_t>(ctr_.last_end)] : "";
  ctr_.last_end = relay_end::count_;
  if (rc.up != nullptr && rc.up->pool() != nullptr &&
      rc.up->backend_index() < rc.up->pool()->size()) {
    const auto& b = rc.up->pool()->at(rc.up->backend_index()).spec;
    r.upstream = b.address;
    r.upstream_port = b.port;
    r.has_upstream = true;
    r.set(r.pool, rc.up->pool()->spec().name);
  }
  if (rc.tls != nullptr) {
    const auto& ti = rc.tls->info();
    r.set_sni(ti.sni);
    r.set_tls(ti.version, ti.cipher);
  }
  if (rc.waf) r.waf = rc.waf->blocked() ? access_waf::block : access_waf::pass;
  const std::string_view end = r.end_reason;
  if (end == "service_limit") r.limit = access_limit::limited;
  (void)alog_->push(r);
}

}  // namespace edge
