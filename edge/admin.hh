#pragma once
// A small HTTP/1.1 server for the admin API, run on the control thread with kernel sockets. It is
// bound to loopback (config refuses anything else); one request per connection.
//
// Every byte a client sends is hostile, and a client that sends nothing is too: each connection has
// deadlines (idle, whole request, response write) and is closed when it misses one; when every slot
// is taken, a new connection evicts the client idle the longest. So idle or slow clients can never
// lock /healthz out, and the loop sleeps in poll() until a socket or a deadline needs it.
//
// Why not cpp-httplib's server (edgectl's client is on cpp-httplib): its 0.11 server gives each
// connection to one thread of a fixed pool, which blocks in a read that times out per read, not
// per request, and it evicts no one. N clients sending a byte now and then hold all N threads and
// /healthz queues behind them (slowloris). Measured on a 2-core machine (pool of 8): with 8
// connections sending one byte every 2 s, every GET /healthz with a 2 s timeout timed out; with
// 1 it answered in 1 ms. The deadlines and eviction above, which tests/e2e/test_admin.py checks,
// need one loop that sees every connection.
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hh"
#include "edge/prom_text.hh"
#include "l4/ip_addr.hh"

namespace edge {

struct http_request {
  std::string method;
  std::string path;  // without the query string
  std::string query;
  std::string body;
};

struct http_response {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

struct http_request_limits {
  size_t max_head = 8 * 1024;   // request line + headers
  size_t max_body = 64 * 1024;  // Content-Length
};

enum class http_parse { incomplete, complete, bad, too_large };

// Parses one request from the bytes received so far (strict: "METHOD /target HTTP/1.x", CRLF line
// ends, header names that are tokens, no control bytes, Content-Length digits only and at most
// once, no Transfer-Encoding). Never reads past `in`; the outcome depends on the bytes only.
http_parse parse_http_request(std::string_view in, http_request& out,
                              const http_request_limits& lim = {});

// Admin API counters, declared once: member, metric name, help.
#define EDGE_ADMIN_COUNTERS(X)                                                                   \
  X(accepted, "edge_admin_connections_accepted_total", "Connections accepted by the admin API.") \
  X(requests, "edge_admin_requests_total", "Requests the admin API answered, any status.")       \
  X(bad_requests, "edge_admin_bad_requests_total",                                               \
    "Malformed or oversized requests (answered 400 or 413).")                                    \
  X(idle_timeouts, "edge_admin_idle_timeouts_total",                                             \
    "Connections closed because the client sent nothing for the idle timeout.")                  \
  X(request_timeouts, "edge_admin_request_timeouts_total",                                       \
    "Connections closed because the request was not complete within the request timeout (slow "  \
    "clients).")                                                                                 \
  X(write_timeouts, "edge_admin_write_timeouts_total",                                           \
    "Connections closed because the client did not read its response within the write timeout.") \
  X(evictions, "edge_admin_evictions_total",                                                     \
    "Connections closed, the one idle the longest first, to make room for a new one (all slots " \
    "taken).")                                                                                   \
  X(accept_errors, "edge_admin_accept_errors_total",                                             \
    "accept() failures other than EAGAIN (e.g. out of file descriptors).")                       \
  X(handler_errors, "edge_admin_handler_errors_total",                                           \
    "Handlers that threw: answered 500, the process lives on.")

struct admin_counters {
#define EDGE_ADMIN_COUNTER_MEMBER(member, name, help) uint64_t member = 0;
  EDGE_ADMIN_COUNTERS(EDGE_ADMIN_COUNTER_MEMBER)
#undef EDGE_ADMIN_COUNTER_MEMBER
};

// One family per EDGE_ADMIN_COUNTERS row.
void append_admin_counters(prom_text::writer& out, const admin_counters& c);

struct admin_limits {
  size_t max_clients =
      4096;  // lowered at listen() to a quarter of RLIMIT_NOFILE when that is smaller
  std::chrono::milliseconds idle_timeout{5000};      // no byte received for this long
  std::chrono::milliseconds request_timeout{10000};  // the whole request, from accept
  std::chrono::milliseconds write_timeout{10000};    // the whole response, once answered
  http_request_limits request;
};

class admin_server {
 public:
  using handler = std::function<http_response(const http_request&)>;

  explicit admin_server(admin_limits limits = {}) : limits_(limits) {}
  ~admin_server();
  admin_server(const admin_server&) = delete;
  admin_server& operator=(const admin_server&) = delete;

  // Binds and listens; raises the soft RLIMIT_NOFILE to the hard limit (idle admin clients and
  // upstream sockets share the process's descriptors) and sizes the client table from it.
  common::result<void> listen(const l4::ip_addr& addr, uint16_t port);
  uint16_t port() const;  // the bound port (listen with port 0 picks one)
  void route(const std::string& method, const std::string& path, handler h);
  // Waits up to `timeout_ms` for activity or the next client deadline, then serves what is ready.
  void poll_once(int timeout_ms);

  const admin_counters& counters() const { return counters_; }
  size_t clients() const { return clients_.size(); }
  size_t max_clients() const { return limits_.max_clients; }
  // The counters above, for /metrics.
  void append_metrics(prom_text::writer& out) const;

 private:
  using clock = std::chrono::steady_clock;
  struct client {
    int fd;
    clock::time_point accepted;
    clock::time_point last_read;
    clock::time_point answered{};
    std::string in;
    std::string out;
    size_t sent = 0;
    bool responded = false;
  };
  void serve(client& c);
  void respond(client& c, const http_response& resp);
  http_response dispatch(const http_request& r);
  clock::time_point deadline(const client& c) const;
  void expire(clock::time_point now);
  void accept_all(clock::time_point now);
  bool evict_oldest();
  void close_client(client& c);

  admin_limits limits_;
  int listen_fd_ = -1;
  clock::time_point accept_paused_until_{};
  std::vector<client> clients_;
  std::map<std::pair<std::string, std::string>, handler> routes_;
  admin_counters counters_;
};

const char* http_reason(int status);

// The value of `key` in a query string ("a=1&b=x%3Ay"), percent-decoded; "1" for a bare key; ""
// when absent or when the value is malformed (a bad %-escape or a control byte after decoding).
std::string query_param(std::string_view query, std::string_view key);

}  // namespace edge
