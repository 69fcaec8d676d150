// Stage waf (services with a WAF policy): the inspector on the client's plaintext. Only the bytes
// it released go upstream; on HTTP services the upstream opens once the first request head passed
// (so a connection flood does not become one on the gateways). A block answers the client (403,
// 400, 413 or 429; a reset on raw services) and resets the upstream. A WebSocket upgrade holds the
// client's bytes until the upstream's answer is known.
#include <rte_cycles.h>

#include "edge/limits_hook.hh"
#include "edge/relay.hh"

namespace edge {

class waf_stage final : public relay_stage {
 public:
  explicit waf_stage(relay& r) : r_(r) {}
  const char* name() const override { return "waf"; }
  bool applies(const relay_service& s) const override { return s.waf && r_.waf_; }
  bool filters() const override { return true; }

  std::optional<relay_end> open(relay_conn& c, const relay_service& s) override {
    auto endpoint = [](const l4::ip_addr& a, uint16_t port) {
      if (a.v6) return waf_endpoint::v6(a.b, port);
      return waf_endpoint::v4({a.b[0], a.b[1], a.b[2], a.b[3]}, port);
    };
    const l4::tcp::conn_info& info = c.info;
    auto wc = waf_conn::create(*r_.waf_, s.waf,  // http or raw, as the policy says
                               {.client = endpoint(info.remote, info.remote_port),
                                .vip = endpoint(info.local, info.local_port),
                                .service = s.name,
                                .limits = r_.limits_,
                                .flow = limits_flow(info.remote, info.local, info.local_port),
                                .log_requests = r_.alog_ != nullptr});
    if (!wc) return relay_end::waf_no_memory;
    c.waf.emplace(std::move(*wc));
    return {};
  }

  stage_step client_bytes(relay_conn& c) override;
  stage_step upstream_ready(relay_conn& c) override;

  void sent_to_client(relay_conn& c, std::span<const std::byte> sent) override {
    if (r_.alog_ != nullptr) r_.log_responses(c, sent);
  }

  void close(relay_conn& c) override {
    c.waf.reset();  // frees the inspector state and drops this connection's hold on its policy
  }

 private:
  void block(relay_conn& c, const waf_action& a);
  relay& r_;
};

// Client bytes through the inspector: only what it released goes upstream, and the client's bytes
// are consumed only once those bytes are out (body spans point into them).
stage_step waf_stage::client_bytes(relay_conn& c) {
  waf_conn& wc = *c.waf;
  auto send_pending = [&]() {
    // HTTP: bytes to forward mean the first request head passed the WAF; the upstream opens now.
    if (c.up == nullptr && !wc.pending().empty() && !r_.open_deferred(c)) return false;
    for (auto p = wc.pending(); !p.empty(); p = wc.pending()) {
      const size_t n = c.up->send(std::as_bytes(p));
      if (n == 0) return false;  // back-pressure: resumes on on_upstream_writable
      wc.sent(n);
      r_.ctr_.bytes_from_client.add(n);
      r_.log_bytes(c, n, 0);
    }
    return true;
  };
  auto held = [&]() { return relay::ended(c) ? stage_step::stop : stage_step::wait; };
  for (;;) {
    if (!send_pending()) return held();
    if (const size_t k = wc.take_consumed()) r_.src_consume(c, k);
    std::span<const uint8_t> chunk;
    if (!r_.src_peek(c, chunk)) return stage_step::stop;
    if (chunk.empty()) break;
    const waf_action a = wc.feed({reinterpret_cast<const char*>(chunk.data()), chunk.size()});
    if (a.what == waf_action::kind::block) {
      block(c, a);
      return stage_step::stop;
    }
    if (a.consumed == 0) break;  // held (a WebSocket upgrade waits for the upstream's answer)
  }
  // A keep-alive request's head gets the first one's time, from its first byte (the wait between
  // requests is the idle timeout's): a client cannot dribble the second head forever.
  if (c.up != nullptr) {
    relay_service& s = r_.services_[c.listener];
    const bool pending = s.head_timeout_tsc != 0 && wc.head_pending();
    if (pending && !c.in_rh)
      r_.rh_link(c, s, rte_rdtsc());
    else if (!pending && c.in_rh)
      r_.rh_unlink(c);
  }
  // The client's FIN, once every byte before it went through: a request cut short is refused (400),
  // a raw service gets its end-of-stream rules.
  if (!c.waf_finished && r_.client_eof(c)) {
    c.waf_finished = true;
    const waf_action a = wc.finish();
    if (a.what == waf_action::kind::block) {
      block(c, a);
      return stage_step::stop;
    }
  }
  if (c.waf_finished && !send_pending()) return held();
  return stage_step::next;
}

// The WAF refused a request: the upstream never sees the rest, the client gets the block response
// and a FIN (HTTP) or a RST (raw).
void waf_stage::block(relay_conn& c, const waf_action& a) {
  if (c.up != nullptr) c.up->abort();
  c.up = nullptr;
  if (a.reset)
    r_.reset_client(c);
  else
    r_.answer_client(c, a.response);
  r_.end(c, relay_end::waf_blocked);
}

// A WebSocket upgrade went upstream: its answer stays in the upstream buffer until the WAF has
// seen its status line (101: a tunnel; else the connection stays HTTP); then the client bytes the
// WAF held go on. wait: more of the answer is needed, or the connection moved on by itself.
stage_step waf_stage::upstream_ready(relay_conn& c) {
  if (!c.waf->awaiting_upgrade()) return stage_step::next;
  const auto head = c.up->peek();
  const bool last = c.upstream_fin || c.up->readable() > head.size();
  if (!c.waf->upstream_answer({reinterpret_cast<const char*>(head.data()), head.size()}, last))
    return stage_step::wait;
  r_.to_client(c);  // the answer first: the held client bytes may end in a block response
  if (!relay::live(c)) return stage_step::stop;
  r_.to_upstream(c);
  return relay::live(c) ? stage_step::next : stage_step::stop;
}

std::unique_ptr<relay_stage> make_waf_stage(relay& r) {
  return std::make_unique<waf_stage>(r);
}

}  // namespace edge
