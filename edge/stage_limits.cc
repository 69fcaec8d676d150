// Stage limits: the rules directory's conn and concurrent limits (limits/), checked once per new
// connection; a concurrent limit's counts are held until the connection's slot goes back. The
// service's own limits (max_connections, per source, per worker) are the relay's admission, before
// any stage; requests/s limits need the request head and run inside the WAF stage.
#include <rte_cycles.h>

#include "edge/limits_hook.hh"
#include "edge/relay.hh"

namespace edge {

class limits_stage final : public relay_stage {
 public:
  explicit limits_stage(relay& r) : r_(r) {}
  const char* name() const override { return "limits"; }
  bool applies(const relay_service&) const override { return r_.limits_ != nullptr; }

  std::optional<relay_end> open(relay_conn& c, const relay_service& s) override {
    const limits::service_limits* sl = r_.limits_->service(s.name);
    if (sl == nullptr || sl->accept.empty()) return {};
    const auto d = limits::limit_set::check_accept(
        *sl, limits_flow(c.info.remote, c.info.local, c.info.local_port), limits_now(rte_rdtsc()),
        r_.worker_, c.hold);
    if (d.what == limits::outcome::pass) return {};
    return relay_end::limited;
  }

  void close(relay_conn& c) override { c.hold.release(); }

 private:
  relay& r_;
};

std::unique_ptr<relay_stage> make_limits_stage(relay& r) {
  return std::make_unique<limits_stage>(r);
}

}  // namespace edge
