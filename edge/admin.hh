#pragma once
// A small HTTP/1.1 server for the admin API, run on the control thread with kernel sockets. It is
// bound to loopback (config refuses anything else); one request per connection.
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/result.hh"
#include "l4/ip_addr.hh"

namespace edge {

struct http_request {
  std::string method;
  std::string path;   // without the query string
  std::string query;
  std::string body;
};

struct http_response {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

class admin_server {
 public:
  using handler = std::function<http_response(const http_request&)>;

  admin_server() = default;
  ~admin_server();
  admin_server(const admin_server&) = delete;
  admin_server& operator=(const admin_server&) = delete;

  common::result<void> listen(const l4::ip_addr& addr, uint16_t port);
  void route(const std::string& method, const std::string& path, handler h);
  // Waits up to `timeout_ms` for activity, then serves what is ready.
  void poll_once(int timeout_ms);

 private:
  struct client {
    int fd;
    std::string in;
    std::string out;
    size_t sent = 0;
    bool responded = false;
  };
  void serve(client& c);
  http_response dispatch(const http_request& r) const;

  int listen_fd_ = -1;
  std::vector<client> clients_;
  std::map<std::pair<std::string, std::string>, handler> routes_;
};

const char* http_reason(int status);

}  // namespace edge
