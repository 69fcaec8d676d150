// edgectl: talks to a running edged through its loopback admin API, in the style of HAProxy's
// runtime API: one subcommand per operation, human output by default, --json for scripts.
//   stats | health | metrics | config [show] | reload | drain | undrain
//   backend list | backend enable|disable POOL ADDR:PORT | backend weight POOL ADDR:PORT N
//   rules check DIR (offline) | rules reload
//   bgp-announce (the BIRD announcer: VIPs announced while /readyz passes; edge/bgp_announce.cc)
// Exit status: 0 done, 1 edged refused or is unreachable (message on stderr), 2 usage.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "edge/bgp_announce.hh"
#include "edge/edgectl_http.hh"

#if __has_include("edge/edgectl_waf.hh")
#include "edge/edgectl_waf.hh"
#define EDGECTL_HAS_WAF 1
#endif

namespace {

using edge::ctl::http;
using edge::ctl::reply;

bool g_json = false;

int fail(const std::string& what) {
  if (g_json)
    std::printf("%s\n", nlohmann::json{{"ok", false}, {"error", what}}.dump().c_str());
  else
    std::fprintf(stderr, "edgectl: %s\n", what.c_str());
  return 1;
}

// A reply: its body as is (text or JSON), or, with --json, JSON always ({"ok", "status",
// "message"} for text bodies).
int show(const reply& r) {
  if (!r.error.empty()) return fail(r.error);
  const bool ok = r.status < 400;
  if (g_json) {
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (j.is_discarded()) {
      std::string msg = r.body;
      while (!msg.empty() && msg.back() == '\n') msg.pop_back();
      j = {{"ok", ok}, {"status", r.status}, {"message", msg}};
    }
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::fwrite(r.body.data(), 1, r.body.size(), ok ? stdout : stderr);
  }
  return ok ? 0 : 1;
}

// Drain state (GET /drain's JSON) in words.
std::string drain_words(const nlohmann::json& j) {
  std::string s = "phase: " + j.value("phase", std::string("?"));
  if (j.contains("refuse_in_ms"))
    s += ", new connections refused in " + std::to_string(j["refuse_in_ms"].get<int64_t>()) + " ms";
  if (j.contains("open_connections"))
    s += ", " + std::to_string(j["open_connections"].get<uint64_t>()) + " connection(s) open";
  if (j.value("exit_requested", false)) s += ", edged exits when drained";
  if (j.contains("announced") && !j["announced"].is_null())
    s += j["announced"].get<bool>() ? ", VIPs announced" : ", VIPs withdrawn";
  return s + "\n";
}

int show_drain(const reply& r) {
  if (!r.error.empty() || r.status >= 400 || g_json) return show(r);
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (j.is_discarded()) return show(r);
  std::fputs(drain_words(j).c_str(), stdout);
  return 0;
}

// Polls GET /drain until the drain is over (drained), or edged is gone (a drain with exit).
int wait_drained(const std::string& admin, int timeout_s) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  while (std::chrono::steady_clock::now() < until) {
    const reply r = http(admin, "GET", "/drain");
    if (!r.error.empty()) {  // edged exited (drain --exit): that is the end of the drain
      if (!g_json)
        std::printf("edged is gone: drain over\n");
      else
        std::printf("%s\n", nlohmann::json{{"ok", true}, {"phase", "exited"}}.dump().c_str());
      return 0;
    }
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (!j.is_discarded() && j.value("phase", "") == "drained") return show_drain(r);
    if (!j.is_discarded() && j.value("phase", "") == "serving")
      return fail("undrained while waiting");
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return fail("drain not over after " + std::to_string(timeout_s) + " s");
}

// Flattens JSON into "a.b.c value" lines (stats and config in words, like sysctl -a).
void flatten(const nlohmann::json& j, const std::string& prefix, std::string& out) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it)
      flatten(it.value(), prefix.empty() ? it.key() : prefix + "." + it.key(), out);
  } else if (j.is_array()) {
    for (size_t i = 0; i < j.size(); ++i) flatten(j[i], prefix + "." + std::to_string(i), out);
  } else {
    out += prefix + " " + (j.is_string() ? j.get<std::string>() : j.dump()) + "\n";
  }
}

std::string enc(const std::string& s) {  // query values: pool names and addresses
  std::string out;
  for (unsigned char ch : s) {
    if (std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == ':' || ch == '~') {
      out += static_cast<char>(ch);
    } else {
      char b[4];
      std::snprintf(b, sizeof b, "%%%02X", ch);
      out += b;
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"edgectl: control a running edged (admin API), and run its BGP announcer"};
  std::string admin = "127.0.0.1:9180";
  app.add_option("--admin", admin, "admin API address of edged")->capture_default_str();
  app.add_flag("--json", g_json, "JSON output (every subcommand)");
  app.require_subcommand(1);
  auto* stats =
      app.add_subcommand("stats",
                         "counters as JSON (/stats: ports, drops, backends, workers, tls, waf, "
                         "services, drain)");
  bool stats_flat = false;
  stats->add_flag("--flat", stats_flat, "one 'name value' line per counter instead of JSON");
  auto* health = app.add_subcommand("health", "liveness and readiness (exit 0 when ready)");
  bool live_only = false;
  health->add_flag("--live", live_only,
                   "liveness only: exit 0 while edged answers /healthz (probes)");
  auto* mproxy =
      app.add_subcommand("metrics-proxy",
                         "serve GET /metrics on LISTEN from the loopback admin API "
                         "(Prometheus scrapes the pod IP; the admin API stays on loopback)");
  std::string mlisten = "0.0.0.0:9181";
  mproxy->add_option("--listen", mlisten, "ADDRESS:PORT to serve /metrics on")
      ->capture_default_str();
  auto* metrics = app.add_subcommand("metrics", "print Prometheus metrics");
  auto* cfg = app.add_subcommand("config", "the running configuration");
  auto* cfg_show = cfg->add_subcommand("show", "print the running configuration (the default)");
  bool cfg_flat = false;
  cfg_show->add_flag("--flat", cfg_flat, "one 'key value' line per setting");
  auto* reload = app.add_subcommand("reload", "re-read the configuration file (and the rules)");

  auto* drain =
      app.add_subcommand("drain",
                         "drain: /readyz fails, VIPs withdrawn, new connections accepted for "
                         "the grace period then refused, open ones finish up to the deadline");
  bool drain_exit = false, drain_wait = false;
  int64_t grace_ms = -1, timeout_ms = -1;
  int wait_s = 3600;
  drain->add_flag("--exit", drain_exit, "edged exits 0 when drained (as SIGTERM)");
  drain->add_flag("--wait", drain_wait, "return when the drain is over");
  drain->add_option("--wait-timeout", wait_s, "seconds --wait waits at most")
      ->capture_default_str();
  drain->add_option("--grace-ms", grace_ms, "override shutdown.grace_ms")
      ->check(CLI::Range(0, 3600000));
  drain->add_option("--timeout-ms", timeout_ms, "override shutdown.drain_timeout_ms")
      ->check(CLI::Range(0, 3600000));
  auto* undrain = app.add_subcommand(
      "undrain", "reverse a drain: accept again, /readyz passes, VIPs announced");
  auto* drain_status = app.add_subcommand("drain-status", "where a drain stands");

  auto* backend =
      app.add_subcommand("backend", "backends, changed live (no reload; kept across reloads)");
  backend->require_subcommand(1);
  std::string pool, addr;
  uint32_t weight = 0;
  auto* b_list = backend->add_subcommand("list", "every backend: health, operator state, weight");
  auto* b_enable = backend->add_subcommand("enable", "put a disabled backend back in rotation");
  auto* b_disable =
      backend->add_subcommand("disable", "take a backend out of rotation (established flows stay)");
  auto* b_weight = backend->add_subcommand("weight", "set a backend's weight (0 drains it)");
  for (auto* sc : {b_enable, b_disable, b_weight}) {
    sc->add_option("POOL", pool, "pool name")->required();
    sc->add_option("BACKEND", addr, "ADDRESS:PORT as in the configuration")->required();
  }
  b_weight->add_option("WEIGHT", weight, "0..65535")->required()->check(CLI::Range(0, 65535));

  edge::announce_options ann;
  auto* bgp = app.add_subcommand("bgp-announce",
                                 "run the BGP announcer: enable BIRD's VIP protocol while /readyz "
                                 "passes, disable it when it fails or edged is unreachable");
  edge::add_announce_options(*bgp, ann);

#ifdef EDGECTL_HAS_WAF
  const auto run_waf = edgectl_waf_subcommands(app);  // offline: rules check, waf eval
#endif
  CLI::App* rules = nullptr;
  for (auto* sc : app.get_subcommands({}))
    if (sc->get_name() == "rules") rules = sc;
  if (rules == nullptr) {
    rules = app.add_subcommand("rules", "rules tools");
    rules->require_subcommand(1);
  }
  auto* rules_reload =
      rules->add_subcommand("reload", "reload the running rules (POST /reload: config and rules)");
  CLI11_PARSE(app, argc, argv);
  if (rules_reload->parsed()) return show(http(admin, "POST", "/reload"));
#ifdef EDGECTL_HAS_WAF
  if (const int rc = run_waf(); rc >= 0) return rc;
#endif

  if (stats->parsed()) {
    const reply r = http(admin, "GET", "/stats");
    if (!stats_flat || !r.error.empty() || r.status >= 400) return show(r);
    std::string out;
    flatten(nlohmann::json::parse(r.body, nullptr, false), "", out);
    std::fputs(out.c_str(), stdout);
    return 0;
  }
  if (metrics->parsed()) return show(http(admin, "GET", "/metrics"));
  if (cfg->parsed()) {
    const reply r = http(admin, "GET", "/config");
    if (!cfg_flat || !r.error.empty() || r.status >= 400) return show(r);
    std::string out;
    flatten(nlohmann::json::parse(r.body, nullptr, false), "", out);
    std::fputs(out.c_str(), stdout);
    return 0;
  }
  if (reload->parsed()) return show(http(admin, "POST", "/reload"));
  if (health->parsed()) {
    const reply live = http(admin, "GET", "/healthz");
    if (!live.error.empty()) return fail(live.error);
    if (live_only) {
      if (g_json)
        std::printf("%s\n", nlohmann::json{{"live", live.status == 200}}.dump().c_str());
      else
        std::printf("live: %s\n", live.status == 200 ? "yes" : "no");
      return live.status == 200 ? 0 : 1;
    }
    const reply ready = http(admin, "GET", "/readyz");
    std::string why = ready.body;
    if (why.rfind("not ready: ", 0) == 0) why = why.substr(11);
    while (!why.empty() && why.back() == '\n') why.pop_back();
    if (g_json) {
      nlohmann::json j{{"live", live.status == 200}, {"ready", ready.status == 200}};
      if (ready.status != 200) j["reason"] = why;
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      std::printf("live: %s\nready: %s\n", live.status == 200 ? "yes" : "no",
                  ready.status == 200 ? "yes" : ("no (" + why + ")").c_str());
    }
    return ready.status == 200 ? 0 : 1;
  }
  if (drain->parsed()) {
    std::string q = drain_exit ? "exit=1" : "exit=0";
    if (grace_ms >= 0) q += "&grace_ms=" + std::to_string(grace_ms);
    if (timeout_ms >= 0) q += "&timeout_ms=" + std::to_string(timeout_ms);
    const reply r = http(admin, "POST", "/drain?" + q);
    if (!drain_wait || !r.error.empty() || r.status >= 400) return show_drain(r);
    return wait_drained(admin, wait_s);
  }
  if (undrain->parsed()) return show_drain(http(admin, "POST", "/undrain"));
  if (drain_status->parsed()) return show_drain(http(admin, "GET", "/drain"));
  if (b_list->parsed()) {
    const reply r = http(admin, "GET", "/backends");
    if (!r.error.empty() || r.status >= 400 || g_json) return show(r);
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (j.is_discarded() || !j.is_array()) return show(r);
    std::printf("%-16s %-28s %-8s %-9s %s\n", "POOL", "BACKEND", "HEALTH", "ADMIN", "WEIGHT");
    for (const auto& b : j)
      std::printf("%-16s %-28s %-8s %-9s %u\n", b.value("pool", "").c_str(),
                  b.value("backend", "").c_str(), b.value("healthy", true) ? "up" : "down",
                  b.value("disabled", false) ? "disabled" : "enabled", b.value("weight", 0u));
    return 0;
  }
  const std::string target = "pool=" + enc(pool) + "&backend=" + enc(addr);
  if (b_enable->parsed()) return show(http(admin, "POST", "/backend?" + target + "&state=enabled"));
  if (b_disable->parsed())
    return show(http(admin, "POST", "/backend?" + target + "&state=disabled"));
  if (b_weight->parsed())
    return show(http(admin, "POST", "/backend?" + target + "&weight=" + std::to_string(weight)));
  if (bgp->parsed()) return edge::run_announcer(admin, ann);
  if (mproxy->parsed()) return edge::run_metrics_proxy(admin, mlisten);
  return 0;
}
