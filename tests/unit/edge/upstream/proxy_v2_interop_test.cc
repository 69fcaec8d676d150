// Interop: haproxy (Debian's, as the reference implementation of the spec) parses the PROXY v2
// headers edge writes, checks their CRC32C, and echoes what it understood; nginx reads the client
// address from them. Each is skipped where the daemon is not installed.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "test_util.hh"
#include "upstream_conn.hh"

extern char** environ;

namespace edge::upstream {
namespace {

using namespace test;

constexpr const char* haproxy_bin = "/usr/sbin/haproxy";

struct relay final : upstream_events {
  int connected = 0, fin = 0, errors = 0;
  std::string got;
  void on_upstream_connected(upstream_conn&) override { ++connected; }
  void on_upstream_data(upstream_conn& c) override {
    while (c.readable()) {
      auto s = c.peek();
      got.append(reinterpret_cast<const char*>(s.data()), s.size());
      c.consume(s.size());
    }
  }
  void on_upstream_fin(upstream_conn&) override { ++fin; }
  void on_upstream_writable(upstream_conn&) override {}
  void on_upstream_error(upstream_conn&, upstream_error, int) override { ++errors; }
};

class haproxy_interop : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(haproxy_bin)) GTEST_SKIP() << "haproxy not installed";
    dir = std::filesystem::temp_directory_path() / ("edge-pp2-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    {
      listener probe;
      port = probe.port;
    }  // a free port; haproxy binds it next
    std::ofstream(dir / "haproxy.cfg")
        << "global\n  maxconn 64\n"
           "defaults\n  mode http\n  timeout connect 2s\n  timeout client 5s\n  timeout server 5s\n"
           "frontend fe\n  bind 127.0.0.1:"
        << port
        << " accept-proxy\n"
           "  http-request return status 200 content-type text/plain lf-string "
           "\"src=%[src] sport=%[src_port] dst=%[dst] dport=%[dst_port] auth=%[fc_pp_authority] "
           "id=%[fc_pp_unique_id,hex]\\n\"\n";
    std::string cfg = (dir / "haproxy.cfg").string();
    const char* argv[] = {haproxy_bin, "-db", "-f", cfg.c_str(), nullptr};
    ASSERT_EQ(::posix_spawn(&pid, haproxy_bin, nullptr, nullptr, const_cast<char**>(argv), environ),
              0);
    // Wait until it listens.
    bool up = false;
    for (int k = 0; k < 100 && !up; ++k) {
      int f = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in sa{};
      sa.sin_family = AF_INET;
      sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      sa.sin_port = htons(port);
      up = ::connect(f, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
      ::close(f);
      if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_TRUE(up) << "haproxy did not start";
    ring = std::move(*uring::create({.sq_entries = 64, .max_ops = 256}));
    pool = std::move(
        *upstream_pool::create({.name = "haproxy", .backends = {{addr("127.0.0.1"), port}}}));
    conns = std::move(*upstream_conns::create(*ring, {.conns = 4}));
  }
  void TearDown() override {
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      int st;
      ::waitpid(pid, &st, 0);
    }
    if (!dir.empty()) std::filesystem::remove_all(dir);
  }
  // Sends the header (encoded by upstream_conn from info, or raw bytes) and a request; returns
  // what haproxy answered before closing.
  std::string exchange(const proxy_v2_info* info, std::span<const uint8_t> raw_header = {}) {
    relay r;
    auto c = conns->open({.pool = pool.get(), .events = &r, .proxy = info});
    EXPECT_TRUE(c);
    if (!c) return {};
    if (!raw_header.empty()) (*c)->send(std::as_bytes(raw_header));
    const std::string req = "GET / HTTP/1.0\r\n\r\n";
    (*c)->send(std::as_bytes(std::span(req)));
    run_until([&] { return ring->poll(); }, [&] { return r.fin > 0 || r.errors > 0; }, 5000);
    (*c)->abort();
    run_until([&] { return ring->poll(); },
              [&] { return conns->free_count() == conns->capacity(); });
    return r.got;
  }

  std::filesystem::path dir;
  uint16_t port = 0;
  pid_t pid = -1;
  std::unique_ptr<uring> ring;
  std::unique_ptr<upstream_pool> pool;
  std::unique_ptr<upstream_conns> conns;
};

TEST_F(haproxy_interop, accepts_ipv4_header_with_tlvs_and_crc) {
  const uint8_t id[] = {0xca, 0xfe, 0x01};
  proxy_v2_info i;
  i.src = addr("203.0.113.9");
  i.dst = addr("198.51.100.1");
  i.src_port = 51000;
  i.dst_port = 443;
  i.unique_id = id;
  i.authority = "shop.example";
  i.alpn = "http/1.1";
  i.ssl = {true, true, true, "TLSv1.3", "TLS_AES_128_GCM_SHA256", "client-7"};
  std::string resp = exchange(&i);
  EXPECT_NE(resp.find("HTTP/1.1 200"), std::string::npos) << resp;
  EXPECT_NE(
      resp.find(
          "src=203.0.113.9 sport=51000 dst=198.51.100.1 dport=443 auth=shop.example id=CAFE01"),
      std::string::npos)
      << resp;
}

TEST_F(haproxy_interop, accepts_ipv6_header) {
  proxy_v2_info i;
  i.src = addr("2001:db8::9");
  i.dst = addr("2001:db8::1");
  i.src_port = 40001;
  i.dst_port = 8443;
  std::string resp = exchange(&i);
  EXPECT_NE(resp.find("src=2001:db8::9 sport=40001 dst=2001:db8::1 dport=8443"), std::string::npos)
      << resp;
}

TEST_F(haproxy_interop, rejects_header_with_wrong_crc) {
  proxy_v2_info i;
  i.src = addr("203.0.113.9");
  i.dst = addr("198.51.100.1");
  i.src_port = 51000;
  i.dst_port = 443;
  std::vector<uint8_t> h(pp2_max_header);
  h.resize(*encode_proxy_v2(i, h));
  // Control: the same bytes sent raw are accepted.
  EXPECT_NE(exchange(nullptr, h).find("HTTP/1.1 200"), std::string::npos);
  h.back() ^= 0x01;  // the CRC's last byte
  std::string resp = exchange(nullptr, h);
  EXPECT_EQ(resp.find("200"), std::string::npos) << resp;
}

// nginx (the usual L7 gateway behind edge) takes the client address from the header.
class nginx_interop : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists("/usr/sbin/nginx")) GTEST_SKIP() << "nginx not installed";
    dir = std::filesystem::temp_directory_path() / ("edge-pp2-nginx-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir / "logs");
    {
      listener probe;
      port = probe.port;
    }
    std::ofstream(dir / "nginx.conf")
        << "daemon off;\nmaster_process off;\nerror_log " << (dir / "logs/error.log").string()
        << ";\npid " << (dir / "nginx.pid").string()
        << ";\nevents { worker_connections 64; }\n"
           "http {\n  access_log "
        << (dir / "logs/access.log").string()
        << ";\n"
           "  client_body_temp_path "
        << dir.string() << ";\n  proxy_temp_path " << dir.string()
        << ";\n"
           "  fastcgi_temp_path "
        << dir.string() << ";\n  uwsgi_temp_path " << dir.string()
        << ";\n"
           "  scgi_temp_path "
        << dir.string()
        << ";\n"
           "  server {\n    listen 127.0.0.1:"
        << port
        << " proxy_protocol;\n"
           "    location / { return 200 \"client=$proxy_protocol_addr:$proxy_protocol_port "
           "server=$proxy_protocol_server_addr:$proxy_protocol_server_port\\n\"; }\n  }\n}\n";
    std::string cfg = (dir / "nginx.conf").string(), prefix = dir.string() + "/";
    const char* argv[] = {"/usr/sbin/nginx", "-p", prefix.c_str(), "-c", cfg.c_str(), nullptr};
    ASSERT_EQ(
        ::posix_spawn(&pid, "/usr/sbin/nginx", nullptr, nullptr, const_cast<char**>(argv), environ),
        0);
    bool up = false;
    for (int k = 0; k < 100 && !up; ++k) {
      int f = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in sa{};
      sa.sin_family = AF_INET;
      sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      sa.sin_port = htons(port);
      up = ::connect(f, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
      ::close(f);
      if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_TRUE(up) << "nginx did not start";
    ring = std::move(*uring::create({.sq_entries = 64, .max_ops = 256}));
    pool = std::move(
        *upstream_pool::create({.name = "nginx", .backends = {{addr("127.0.0.1"), port}}}));
    conns = std::move(*upstream_conns::create(*ring, {.conns = 4}));
  }
  void TearDown() override {
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      int st;
      ::waitpid(pid, &st, 0);
    }
    if (!dir.empty()) std::filesystem::remove_all(dir);
  }

  std::filesystem::path dir;
  uint16_t port = 0;
  pid_t pid = -1;
  std::unique_ptr<uring> ring;
  std::unique_ptr<upstream_pool> pool;
  std::unique_ptr<upstream_conns> conns;
};

TEST_F(nginx_interop, sees_client_address_from_header) {
  proxy_v2_info i;
  i.src = addr("203.0.113.77");
  i.dst = addr("198.51.100.1");
  i.src_port = 61000;
  i.dst_port = 443;
  i.authority = "shop.example";
  relay r;
  auto c = conns->open({.pool = pool.get(), .events = &r, .proxy = &i});
  ASSERT_TRUE(c);
  const std::string req = "GET / HTTP/1.0\r\nHost: shop.example\r\n\r\n";
  (*c)->send(std::as_bytes(std::span(req)));
  (*c)->shutdown_write();
  ASSERT_TRUE(
      run_until([&] { return ring->poll(); }, [&] { return r.fin > 0 || r.errors > 0; }, 5000));
  EXPECT_NE(r.got.find("HTTP/1.1 200"), std::string::npos) << r.got;
  EXPECT_NE(r.got.find("client=203.0.113.77:61000 server=198.51.100.1:443"), std::string::npos)
      << r.got;
  (*c)->close();
  EXPECT_TRUE(run_until([&] { return ring->poll(); },
                        [&] { return conns->free_count() == conns->capacity(); }));
}

}  // namespace
}  // namespace edge::upstream
