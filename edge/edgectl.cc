// edgectl: talks to a running edged through its loopback admin API.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstring>
#include <string>

#if __has_include("edge/edgectl_waf.hh")
#include "edge/edgectl_waf.hh"
#define EDGECTL_HAS_WAF 1
#endif

namespace {

struct reply {
  int status = 0;
  std::string body;
  std::string error;
};

reply http(const std::string& admin, const std::string& method, const std::string& path) {
  reply r;
  const auto colon = admin.rfind(':');
  std::string host = admin.substr(0, colon);
  if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
  const uint16_t port = static_cast<uint16_t>(std::stoi(admin.substr(colon + 1)));
  sockaddr_storage ss{};
  socklen_t len;
  if (host.find(':') != std::string::npos) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(port);
    inet_pton(AF_INET6, host.c_str(), &s6->sin6_addr);
    len = sizeof(*s6);
  } else {
    auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
    inet_pton(AF_INET, host.c_str(), &s4->sin_addr);
    len = sizeof(*s4);
  }
  const int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    r.error = "cannot reach the edged admin API at " + admin + ": " + strerror(errno) + " (is edged running?)";
    close(fd);
    return r;
  }
  const std::string req = method + " " + path + " HTTP/1.1\r\nHost: " + admin +
                          "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
  if (write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    r.error = std::string("write to admin API failed: ") + strerror(errno);
    close(fd);
    return r;
  }
  std::string in;
  char buf[8192];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) in.append(buf, static_cast<size_t>(n));
  close(fd);
  const auto head_end = in.find("\r\n\r\n");
  if (in.rfind("HTTP/1.1 ", 0) != 0 || head_end == std::string::npos) {
    r.error = "malformed reply from the admin API at " + admin;
    return r;
  }
  r.status = std::stoi(in.substr(9, 3));
  r.body = in.substr(head_end + 4);
  return r;
}

int show(const reply& r) {
  if (!r.error.empty()) {
    std::fprintf(stderr, "edgectl: %s\n", r.error.c_str());
    return 1;
  }
  std::fwrite(r.body.data(), 1, r.body.size(), r.status < 400 ? stdout : stderr);
  return r.status < 400 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"edgectl: control a running edged"};
  std::string admin = "127.0.0.1:9180";
  app.add_option("--admin", admin, "admin API address of edged")->capture_default_str();
  app.require_subcommand(1);
  auto* stats =
      app.add_subcommand("stats",
                         "print counters as JSON (/stats: ports, drops, backends, workers, "
                         "tls, waf, services)");
  auto* health = app.add_subcommand("health", "liveness and readiness (exit 0 when ready)");
  auto* metrics = app.add_subcommand("metrics", "print Prometheus metrics");
  auto* cfg = app.add_subcommand("config", "print the running configuration");
  auto* reload = app.add_subcommand("reload", "re-read the configuration file");
#ifdef EDGECTL_HAS_WAF
  const auto run_waf = edgectl_waf_subcommands(app);  // offline: rules check, waf eval
#endif
  CLI11_PARSE(app, argc, argv);
#ifdef EDGECTL_HAS_WAF
  if (const int rc = run_waf(); rc >= 0) return rc;
#endif

  if (stats->parsed()) return show(http(admin, "GET", "/stats"));
  if (metrics->parsed()) return show(http(admin, "GET", "/metrics"));
  if (cfg->parsed()) return show(http(admin, "GET", "/config"));
  if (reload->parsed()) return show(http(admin, "POST", "/reload"));
  if (health->parsed()) {
    const reply live = http(admin, "GET", "/healthz");
    if (!live.error.empty()) return show(live);
    const reply ready = http(admin, "GET", "/readyz");
    std::printf("live: %s\nready: %s\n", live.status == 200 ? "yes" : "no", ready.status == 200 ? "yes" : "no");
    return ready.status == 200 ? 0 : 1;
  }
  return 0;
}
