// Stage tls (services of kind tls): a session per connection, opened at accept; the client's
// bytes go no further until the handshake has finished. The record layer itself sits at the
// chain's client end (relay_tls.cc): the relay reads the client's plaintext and writes the
// upstream's bytes through the session.
#include "edge/relay.hh"

namespace edge {

class tls_stage final : public relay_stage {
 public:
  explicit tls_stage(relay& r) : r_(r) {}
  const char* name() const override { return "tls"; }
  bool applies(const relay_service& s) const override { return s.tls != nullptr; }

  std::optional<relay_end> open(relay_conn& c, const relay_service& s) override {
    if (!r_.tls_accept(c, s)) return relay_end::tls_no_session;
    r_.enter(c, relay_state::handshake);
    return {};
  }

  stage_step ready(relay_conn& c) override {
    if (c.state != relay_state::handshake) return stage_step::next;
    if (r_.tls_handshake(c)) return stage_step::next;
    return relay::ended(c) ? stage_step::stop : stage_step::wait;
  }

  void close(relay_conn& c) override { r_.tls_close(c); }

 private:
  relay& r_;
};

std::unique_ptr<relay_stage> make_tls_stage(relay& r) {
  return std::make_unique<tls_stage>(r);
}

}  // namespace edge
