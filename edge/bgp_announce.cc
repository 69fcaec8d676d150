#include "edge/bgp_announce.hh"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <thread>

#include "edge/edgectl_http.hh"

namespace edge {
namespace {

std::atomic<bool> g_stop{false};
void on_stop(int) {
  g_stop.store(true);
}

void log(const std::string& msg) {
  char ts[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  std::fprintf(stderr, "%s bgp-announce: %s\n", ts, msg.c_str());
}

// Reads BIRD's reply up to its last line ("DDDD text": four digits and a space; continuation lines
// are "DDDD-text" or start with a space). Returns the code of the last line, -1 on error/timeout.
int read_reply(int fd, std::string& text) {
  std::string buf;
  for (;;) {
    size_t start = 0;
    for (size_t nl; (nl = buf.find('\n', start)) != std::string::npos; start = nl + 1) {
      const std::string line = buf.substr(start, nl - start);
      text += line + "\n";
      if (line.size() >= 5 && std::isdigit(static_cast<unsigned char>(line[0])) && line[4] == ' ')
        return std::atoi(line.substr(0, 4).c_str());
    }
    buf.erase(0, start);
    if (buf.size() + text.size() > (1u << 20)) return -1;  // a reply this long is not ours
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 3000) <= 0) return -1;
    char chunk[4096];
    const ssize_t n = read(fd, chunk, sizeof chunk);
    if (n <= 0) return -1;
    buf.append(chunk, static_cast<size_t>(n));
  }
}

}  // namespace

void add_announce_options(CLI::App& app, announce_options& o) {
  app.add_option("--bird-socket", o.bird_socket, "BIRD control socket")->capture_default_str();
  app.add_option("--protocol", o.protocol, "BIRD protocol holding the VIP routes")
      ->capture_default_str();
  app.add_option("--interval-ms", o.interval_ms, "how often /readyz is asked")
      ->check(CLI::Range(50, 60000))
      ->capture_default_str();
  app.add_flag("--once", o.once, "one round, then exit");
}

std::string bird_command(const std::string& socket_path, const std::string& cmd,
                         std::string* reply) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof sa.sun_path) return "socket path too long: " + socket_path;
  std::memcpy(sa.sun_path, socket_path.c_str(), socket_path.size());
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::string("socket: ") + strerror(errno);
  std::string err, text;
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    err = "cannot reach BIRD at " + socket_path + ": " + strerror(errno);
  } else if (const int hello = read_reply(fd, text); hello != 1) {
    err = "no greeting from BIRD at " + socket_path;
  } else {
    text.clear();
    const std::string line = cmd + "\n";
    if (write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      err = std::string("write to BIRD: ") + strerror(errno);
    } else {
      const int code = read_reply(fd, text);
      if (code < 0)
        err = "no reply from BIRD to '" + cmd + "'";
      else if (code >= 1000)  // 8xxx run-time errors, 9xxx syntax errors
        err = "BIRD refused '" + cmd + "': " + text.substr(0, text.find('\n'));
    }
  }
  close(fd);
  if (reply != nullptr) *reply = text;
  return err;
}

int run_announcer(const std::string& admin, const announce_options& o) {
  struct sigaction sa {};
  sa.sa_handler = on_stop;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  const bool pattern = o.protocol.find_first_of("*?") != std::string::npos;
  const std::string target = pattern ? "\"" + o.protocol + "\"" : o.protocol;
  int announced = -1;  // what the last successful BIRD command did
  std::string last_error;
  log("watching http://" + admin + "/readyz; BIRD protocol " + o.protocol + " at " + o.bird_socket);
  for (;;) {
    const bool stopping = g_stop.load();
    bool want = false;
    std::string why = "stopping";
    if (!stopping) {
      const ctl::reply r = ctl::http(admin, "GET", "/readyz", 2);
      want = r.error.empty() && r.status == 200;
      why = !r.error.empty() ? r.error : r.body.substr(0, r.body.find('\n'));
    }
    const std::string err = bird_command(o.bird_socket, (want ? "enable " : "disable ") + target);
    if (!err.empty()) {
      if (err != last_error) log(err);
      last_error = err;
      if (o.once) return 1;
    } else {
      last_error.clear();
      if (announced != (want ? 1 : 0)) {
        log(std::string(want ? "VIPs announced (" : "VIPs withdrawn (") + why + ")");
        announced = want ? 1 : 0;
        // Tell edged (counted and logged there as a drain step); unreachable edged: nothing to
        // tell.
        (void)ctl::http(admin, "POST",
                        std::string("/announcer?state=") + (want ? "announced" : "withdrawn"), 2);
      }
    }
    if (o.once || stopping) return err.empty() ? 0 : 1;
    for (int slept = 0; slept < o.interval_ms && !g_stop.load(); slept += 10)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

int run_metrics_proxy(const std::string& admin, const std::string& listen) {
  struct sigaction sa {};
  sa.sa_handler = on_stop;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  const auto colon = listen.rfind(':');
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  const std::string port = colon == std::string::npos ? "" : listen.substr(colon + 1);
  if (colon == std::string::npos || port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoul(port) > 65535 ||
      inet_pton(AF_INET, listen.substr(0, colon).c_str(), &sin.sin_addr) != 1) {
    std::fprintf(stderr, "edgectl: bad --listen %s (want IPv4ADDRESS:PORT)\n", listen.c_str());
    return 2;
  }
  sin.sin_port = htons(static_cast<uint16_t>(std::stoul(port)));
  const int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (lfd < 0 || bind(lfd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0 ||
      ::listen(lfd, 64) != 0) {
    std::fprintf(stderr, "edgectl: cannot listen on %s: %s\n", listen.c_str(), strerror(errno));
    return 1;
  }
  log("serving /metrics of http://" + admin + " on " + listen);
  while (!g_stop.load()) {
    pollfd p{lfd, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    const int fd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    timeval tv{2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    std::string in;
    char buf[2048];
    while (in.find("\r\n\r\n") == std::string::npos && in.size() < 8192) {
      const ssize_t n = read(fd, buf, sizeof buf);
      if (n <= 0) break;
      in.append(buf, static_cast<size_t>(n));
    }
    int status = 404;
    std::string body = "not found\n", type = "text/plain";
    if (in.rfind("GET /metrics ", 0) == 0 || in.rfind("GET /metrics?", 0) == 0) {
      const ctl::reply r = ctl::http(admin, "GET", "/metrics", 2);
      if (r.error.empty()) {
        status = r.status;
        body = r.body;
        type = "text/plain; version=0.0.4";
      } else {
        status = 502;
        body = r.error + "\n";
      }
    }
    const std::string out = "HTTP/1.1 " + std::to_string(status) +
                            (status == 200 ? " OK" : " Error") + "\r\nContent-Type: " + type +
                            "\r\nContent-Length: " + std::to_string(body.size()) +
                            "\r\nConnection: close\r\n\r\n" + body;
    for (size_t sent = 0; sent < out.size();) {
      const ssize_t n = send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    close(fd);
  }
  close(lfd);
  return 0;
}

}  // namespace edge
