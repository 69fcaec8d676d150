#pragma once
// The BGP announcer (`edgectl bgp-announce`): BIRD announces the VIPs (a static protocol of /32 and
// /128 routes, deploy/bird/) while edged's /readyz passes. Each round it asks /readyz and enables
// or disables that protocol over BIRD's control socket; edged unreachable counts as not ready.
// Commands are re-sent every round (idempotent in BIRD), so a restarted BIRD, whose VIP protocol
// starts disabled, is corrected within one interval. On SIGTERM/SIGINT it withdraws and exits.
// Each change is reported to edged (POST /announcer), which counts and logs it.
#include <string>

namespace CLI {
class App;
}

namespace edge {

struct announce_options {
  std::string bird_socket = "/run/bird/bird.ctl";
  std::string protocol = "edge_vips*";  // a BIRD name or pattern (quoted when it has * or ?)
  int interval_ms = 500;
  bool once = false;  // one round, then exit (0: BIRD did what /readyz asks)
};

void add_announce_options(CLI::App& app, announce_options& o);

// One command on BIRD's control socket. Returns "" on success (reply code 0xxx), else why not.
// `reply` gets the reply's text lines.
std::string bird_command(const std::string& socket_path, const std::string& cmd,
                         std::string* reply = nullptr);

int run_announcer(const std::string& admin, const announce_options& o);

// `edgectl metrics-proxy`: answers GET /metrics on `listen` (IPv4 ADDRESS:PORT) with what the
// loopback admin API's /metrics says (502 when edged is unreachable), anything else 404. One
// request per connection, 2 s deadlines per client; runs until SIGTERM/SIGINT.
int run_metrics_proxy(const std::string& admin, const std::string& listen);

}  // namespace edge
