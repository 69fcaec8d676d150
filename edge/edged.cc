// edged: the edge appliance daemon.
//   edged --config FILE   run
//   edged --check FILE    validate the configuration and exit (0 valid, 2 invalid)
// Exit status: 0 stopped by SIGTERM/SIGINT after draining, 2 configuration error (at load or at
// start: certificates, rules, lcores), 3 runtime start failure (EAL, ports, admin socket, workers).
// Signals: SIGHUP reloads (as POST /reload); SIGTERM/SIGINT drain then stop.
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <atomic>
#include <csignal>
#include <cstdio>

#include "edge/appliance.hh"
#include "edge/config.hh"
#include "edge/logging.hh"
#include "tls/context.hh"

namespace {

std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};
std::atomic<bool> g_reopen{false};

void on_signal(int) {
  g_stop.store(true);
}
void on_usr1(int) {
  g_reopen.store(true);
}
void on_hup(int) {
  g_reload.store(true);
}

constexpr int exit_bad_config = 2;
constexpr int exit_start_failed = 3;

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"edged: DPDK ingress appliance (L4 balancing, TCP/TLS termination, WAF)"};
  std::string config_path, check_path;
  auto* run_opt = app.add_option("-c,--config", config_path, "configuration file to run");
  auto* check_opt = app.add_option("--check", check_path, "validate a configuration file and exit");
  run_opt->excludes(check_opt);
  app.footer(
      "Signals: SIGHUP reloads the configuration (as POST /reload); SIGUSR1 reopens the access\n"
      "log (rotation); SIGTERM/SIGINT drain and stop: /readyz fails, new connections are accepted\n"
      "for shutdown.grace_ms, then refused; open ones get shutdown.drain_timeout_ms, then RST.\n"
      "Exit status: 0 stopped by a signal, or --check passed; 2 configuration error (at load or\n"
      "at start: certificates, WAF rules, lcores), with file:line:col; 3 runtime start failure\n"
      "(EAL, ports, admin socket, workers). Start failures are printed on stderr even with\n"
      "logging.file set.");
  CLI11_PARSE(app, argc, argv);

  if (!check_path.empty()) {
    spdlog::set_level(spdlog::level::off);  // the components' own logs: the result goes to stderr
    auto c = edge::load_config(check_path);
    if (!c) {
      std::fprintf(stderr, "edged: %s\n", c.error().str().c_str());
      return exit_bad_config;
    }
    // Everything start validates: the host's CPUs, certificates, keys, CA bundles, ticket keys,
    // the WAF rules and policies.
    if (auto r = edge::appliance::check(*c); !r) {
      std::fprintf(stderr, "edged: %s\n", r.error().str().c_str());
      return exit_bad_config;
    }
    std::printf("%s: configuration is valid (%zu ports, %zu workers, %zu pools, %zu services)\n",
                check_path.c_str(), c->ports.size(), c->workers.lcores.size(), c->pools.size(),
                c->services.size());
    return 0;
  }
  if (config_path.empty()) {
    std::fprintf(stderr, "edged: --config FILE or --check FILE is required\n%s",
                 app.help().c_str());
    return exit_bad_config;
  }

  auto c = edge::load_config(config_path);
  if (!c) {
    std::fprintf(stderr, "edged: %s\n", c.error().str().c_str());
    return exit_bad_config;
  }
  if (auto r = edge::setup_logging(c->logging); !r) {
    std::fprintf(stderr, "edged: %s\n", r.error().str().c_str());
    return exit_bad_config;
  }

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  struct sigaction hup {};
  hup.sa_handler = on_hup;
  sigaction(SIGHUP, &hup, nullptr);
  struct sigaction usr1 {};
  usr1.sa_handler = on_usr1;
  sigaction(SIGUSR1, &usr1, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  int rc = 0;
  {
    const bool log_to_file = !c->logging.file.empty();
    edge::appliance a(std::move(*c));
    if (auto r = a.start(argv[0]); !r) {
      spdlog::critical("start failed: {}", r.error().str());
      // The terminal (or the unit's journal) hears of it too, whatever logging.file says.
      if (log_to_file) std::fprintf(stderr, "edged: start failed: %s\n", r.error().str().c_str());
      rc = a.start_failed_on_config() ? exit_bad_config : exit_start_failed;
    } else {
      a.run(g_stop, &g_reload, &g_reopen);
      spdlog::info("signal received, stopping");
      a.drain();
    }
    a.shutdown();
  }
  spdlog::info("edged stopped");
  edge::shutdown_logging();
  return rc;
}
