// The access log: the JSON line's fields (Envoy's names), a full ring counted and never waited
// on, and a file rotated (rename + reopen) many times while a producer writes: no line lost, none
// duplicated, none split.
#include "edge/access_log.hh"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

namespace edge {
namespace {

access_record sample(int64_t seq) {
  access_record r;
  r.start_unix_us = 1765000000000000ull;
  r.end_unix_us = r.start_unix_us + 12345;
  r.duration_us = 12345;
  r.handshake_us = 2100;
  r.client = *l4::ip_addr::parse("198.51.100.7");
  r.client_port = 40000;
  r.vip = *l4::ip_addr::parse("2001:db8::100");
  r.vip_port = 443;
  r.upstream = *l4::ip_addr::parse("10.0.1.11");
  r.upstream_port = 80;
  r.has_upstream = true;
  r.bytes_received = seq;
  r.set(r.service, "www");
  r.set(r.pool, "gw");
  r.set_sni("www.example.com\"\x01");
  r.set_tls("TLSv1.3", "TLS_AES_128_GCM_SHA256");
  r.waf = access_waf::block;
  r.end_reason = "waf_blocked";
  return r;
}

TEST(access_log, json_fields_follow_envoy) {
  const auto j = nlohmann::json::parse(format_access_json(sample(7)));
  EXPECT_EQ(j["start_time"], "2025-12-06T05:46:40.000Z");
  EXPECT_EQ(j["downstream_remote_address"], "198.51.100.7:40000");
  EXPECT_EQ(j["downstream_local_address"], "[2001:db8::100]:443");
  EXPECT_EQ(j["requested_server_name"], "www.example.com\"\x01") << "escaped, and parsed back";
  EXPECT_EQ(j["downstream_tls_version"], "TLSv1.3");
  EXPECT_EQ(j["downstream_tls_cipher"], "TLS_AES_128_GCM_SHA256");
  EXPECT_EQ(j["upstream_host"], "10.0.1.11:80");
  EXPECT_EQ(j["upstream_cluster"], "gw");
  EXPECT_EQ(j["route_name"], "www");
  EXPECT_EQ(j["bytes_received"], 7);
  EXPECT_TRUE(j["bytes_sent"].is_null()) << "unknown is null, not 0";
  EXPECT_EQ(j["duration"], 12);
  EXPECT_EQ(j["downstream_handshake_duration"], 2);
  EXPECT_TRUE(j["response_duration"].is_null());
  EXPECT_EQ(j["response_flags"], "DI");
  EXPECT_EQ(j["connection_termination_details"], "waf_blocked");
  EXPECT_EQ(j["waf_action"], "block");
}

// A request's line: Envoy's HTTP fields besides the connection's; hostile bytes stay valid JSON.
TEST(access_log, request_lines_carry_the_http_fields) {
  access_record r = sample(9);
  r.request = true;
  r.response_code = 404;
  copy_cut(r.req.method, "GET");
  copy_cut(r.req.path, "/a?b=\xff\x01\"" + std::string(400, 'p'));
  copy_cut(r.req.authority, "shop.example");
  r.req.minor_version = 0;
  const auto j = nlohmann::json::parse(format_access_json(r));
  EXPECT_EQ(j["method"], "GET");
  const std::string path = j["path"];
  // 0xff goes out as \u00ff (ASCII output), which reads back as U+00FF: two bytes in UTF-8.
  EXPECT_EQ(path.substr(0, 9), "/a?b=\xc3\xbf\x01\"");
  EXPECT_EQ(path.size(), r.req.path.size() - 1 + 1) << "cut to the field, not overrun";
  EXPECT_EQ(j["protocol"], "HTTP/1.0");
  EXPECT_EQ(j["response_code"], 404);
  EXPECT_EQ(j["authority"], "shop.example");
  EXPECT_TRUE(j["user_agent"].is_null());
  // No response came: null, not 0.
  r.response_code = 0;
  EXPECT_TRUE(nlohmann::json::parse(format_access_json(r))["response_code"].is_null());
  // A connection's line has none of them.
  EXPECT_FALSE(nlohmann::json::parse(format_access_json(sample(9))).contains("method"));
}

TEST(access_log, long_strings_are_cut_not_overrun) {
  access_record r;
  r.set_sni(std::string(500, 'a'));
  EXPECT_EQ(std::string(r.sni.data()).size(), r.sni.size() - 1);
}

TEST(access_log, full_ring_is_counted_never_waited_on) {
  access_ring ring(16);
  for (int i = 0; i < 16; ++i) EXPECT_TRUE(ring.push(sample(i)));
  EXPECT_FALSE(ring.push(sample(16)));
  EXPECT_FALSE(ring.push(sample(17)));
  EXPECT_EQ(ring.full_drops(), 2u);
  access_record out[32];
  EXPECT_EQ(ring.pop(out, 32), 16u);
  EXPECT_EQ(out[15].bytes_received, 15);
  EXPECT_TRUE(ring.push(sample(18)));
}

TEST(access_log, reopen_under_load_loses_no_line) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("edge-alog-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const auto path = (dir / "access.log").string();
  auto log = access_log::open(path);
  ASSERT_TRUE(log) << log.error().str();
  access_ring* ring = (*log)->add_ring(1024);
  (*log)->start();
  constexpr int64_t total = 100000;
  uint64_t retries = 0;
  std::thread producer([&] {
    for (int64_t i = 0; i < total; ++i)
      while (!ring->push(sample(i))) {  // a test producer retries; a worker would count and move on
        ++retries;
        std::this_thread::yield();
      }
  });
  int rotations = 0;
  for (; rotations < 20; ++rotations) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    // The log thread reopens at its next round: rotate only once the previous reopen made the file.
    // (up to 5 s: an ASan build on a loaded machine took over 1 s once)
    for (int w = 0; w < 2500 && !std::filesystem::exists(path); ++w)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    std::error_code ec;  // no throw here: the producer thread is still running
    std::filesystem::rename(path, dir / ("access.log." + std::to_string(rotations)), ec);
    EXPECT_FALSE(ec) << "rotation " << rotations
                     << ": the log thread had not reopened the file: " << ec.message();
    if (ec) break;
    (*log)->request_reopen();
  }
  producer.join();
  (*log)->stop();
  std::set<int64_t> seen;
  size_t lines = 0, files = 0;
  for (const auto& f : std::filesystem::directory_iterator(dir)) {
    ++files;
    std::ifstream in(f.path());
    for (std::string line; std::getline(in, line);) {
      ++lines;
      auto j = nlohmann::json::parse(line, nullptr, false);
      ASSERT_FALSE(j.is_discarded()) << "a split or garbled line: " << line.substr(0, 80);
      EXPECT_TRUE(seen.insert(j["bytes_received"].get<int64_t>()).second) << "duplicated";
    }
  }
  EXPECT_EQ(lines, static_cast<size_t>(total));
  EXPECT_EQ(seen.size(), static_cast<size_t>(total))
      << "lines lost across " << rotations << " rotations";
  EXPECT_GE((*log)->reopens(), 15u) << "the reopens happened";
  EXPECT_GE(files, 16u);
  EXPECT_EQ((*log)->lines(), static_cast<uint64_t>(total));
  EXPECT_EQ((*log)->write_errors(), 0u);
  std::filesystem::remove_all(dir);
  std::printf(
      "%lld lines over %zu files, %d rotations, producer retried %llu times on a full ring\n",
      static_cast<long long>(total), files, rotations, static_cast<unsigned long long>(retries));
}

}  // namespace
}  // namespace edge
