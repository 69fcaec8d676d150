#pragma once
// The admin API client of edgectl and the BGP announcer, on cpp-httplib: one request per
// connection (Connection: close, as the admin server wants), connect, each send and each read
// bounded by `timeout_s`, the reply body capped at max_reply_body (a larger one is an error, not
// a truncated body).
#include <arpa/inet.h>
#include <httplib.h>

#include <cstdint>
#include <string>

namespace edge::ctl {

struct reply {
  int status = 0;
  std::string body;
  std::string error;  // set when edged could not be reached or answered garbage
};

// /metrics, the largest reply, is a few hundred KiB; this only stops a runaway peer.
inline constexpr size_t max_reply_body = size_t{64} << 20;

// `admin` is HOST:PORT or [V6]:PORT, HOST an IP address (never a name: no resolver on this path).
inline reply http(const std::string& admin, const std::string& method, const std::string& path,
                  int timeout_s = 5) {
  reply r;
  const auto colon = admin.rfind(':');
  if (colon == std::string::npos) {
    r.error = "bad --admin " + admin + " (want HOST:PORT)";
    return r;
  }
  std::string host = admin.substr(0, colon);
  if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
  const std::string port_s = admin.substr(colon + 1);
  unsigned long port = 0;
  if (port_s.empty() || port_s.size() > 5 ||
      port_s.find_first_not_of("0123456789") != std::string::npos ||
      (port = std::stoul(port_s)) == 0 || port > 65535) {
    r.error = "bad --admin port in " + admin;
    return r;
  }
  unsigned char bytes[16]{};
  if (inet_pton(host.find(':') != std::string::npos ? AF_INET6 : AF_INET, host.c_str(), bytes) !=
      1) {
    r.error = "bad --admin address " + host + " (want an IP address)";
    return r;
  }

  httplib::ClientImpl cli(host, static_cast<int>(port));
  cli.set_connection_timeout(timeout_s);
  cli.set_read_timeout(timeout_s);
  cli.set_write_timeout(timeout_s);
  cli.set_keep_alive(false);
  cli.set_url_encode(false);  // the query edgectl built goes as it is
  httplib::Request req;
  req.method = method;
  req.path = path;
  req.content_receiver = [&r](const char* data, size_t n, uint64_t, uint64_t) {
    if (r.body.size() + n > max_reply_body) return false;  // httplib ends with Error::Canceled
    r.body.append(data, n);
    return true;
  };
  httplib::Response res;
  httplib::Error err = httplib::Error::Success;
  if (cli.send(req, res, err)) {
    r.status = res.status;
    return r;
  }
  r.body.clear();
  switch (err) {
    // httplib keeps no errno of a failed connect: say which of its two failures it was.
    case httplib::Error::Connection:
      r.error =
          "cannot reach the edged admin API at " + admin + ": connect failed (is edged running?)";
      break;
    case httplib::Error::ConnectionTimeout:
      r.error = "cannot reach the edged admin API at " + admin + ": no connection within " +
                std::to_string(timeout_s) + " s (is edged running?)";
      break;
    case httplib::Error::Write:
      r.error = "write to admin API failed (" + admin + ")";
      break;
    case httplib::Error::Canceled:
      r.error = "reply from the admin API at " + admin + " exceeds " +
                std::to_string(max_reply_body >> 20) + " MiB";
      break;
    default:  // Read: no status line, bad headers or body, or the read timed out
      r.error = "malformed reply from the admin API at " + admin;
      break;
  }
  return r;
}

}  // namespace edge::ctl
