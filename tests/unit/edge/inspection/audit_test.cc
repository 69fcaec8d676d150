// The audit ring (bounded SPSC, drop-new counted) and the drainer that writes JSON lines.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "edge/inspection/waf_audit.hh"

namespace {

edge::waf_audit_record rec(uint32_t id) {
  edge::waf_audit_record r;
  r.rule_id = id;
  return r;
}

TEST(waf_audit_ring, full_ring_drops_new_records_and_counts_them) {
  edge::waf_audit_ring ring(5);  // rounded up to 8
  ASSERT_EQ(ring.capacity(), 8u);
  for (uint32_t i = 1; i <= 10; ++i) ring.push(rec(i));
  EXPECT_EQ(ring.pushed(), 8u);
  EXPECT_EQ(ring.dropped(), 2u);
  std::vector<edge::waf_audit_record> out(16);
  ASSERT_EQ(ring.pop(out), 8u);
  for (uint32_t i = 0; i < 8; ++i) EXPECT_EQ(out[i].rule_id, i + 1);  // oldest kept, in order
  EXPECT_EQ(ring.pop(out), 0u);
  EXPECT_TRUE(ring.push(rec(11)));
}

TEST(waf_audit_ring, producer_and_consumer_threads_keep_order_and_lose_nothing_uncounted) {
  edge::waf_audit_ring ring(64);
  constexpr uint32_t n = 200000;
  std::atomic<bool> done{false};
  std::thread prod([&] {
    for (uint32_t i = 1; i <= n; ++i) ring.push(rec(i));
    done.store(true);
  });
  std::vector<edge::waf_audit_record> out(32);
  uint32_t last = 0;
  uint64_t got = 0;
  bool ordered = true;
  for (;;) {
    bool finished = done.load();  // read before pop: an empty pop after this means truly empty
    size_t k = ring.pop(out);
    for (size_t i = 0; i < k; ++i) {
      ordered &= out[i].rule_id > last;
      last = out[i].rule_id;
    }
    got += k;
    if (finished && k == 0) break;
  }
  prod.join();
  EXPECT_TRUE(ordered);
  EXPECT_EQ(got + ring.dropped(), n);
  EXPECT_EQ(got, ring.pushed());
}

TEST(waf_audit_json, escapes_attacker_bytes_into_one_valid_line) {
  edge::waf_audit_record r;
  r.rule_id = 100200;
  r.where = waf::target::args;
  r.verdict = edge::waf_audit_verdict::block;
  r.status = 403;
  r.excerpt_len =
      edge::copy_bounded(std::string_view("<a\"b\\c\n\x01\xff>", 10), r.excerpt, sizeof r.excerpt);
  r.field_len = edge::copy_bounded("msg", r.field, sizeof r.field);
  r.request_id_len = edge::copy_bounded("0001000000000002", r.request_id, sizeof r.request_id);
  r.client =
      edge::waf_endpoint::v6({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 4242);
  auto j = edge::waf_audit_json(r);
  EXPECT_EQ(j.find('\n'), std::string::npos);
  EXPECT_NE(j.find(R"("excerpt":"<a\"b\\c\n\u0001\u00ff>")"), std::string::npos) << j;
  EXPECT_NE(j.find(R"("client":"[2001:db8::1]:4242")"), std::string::npos) << j;
  EXPECT_NE(j.find(R"("vip":"-")"), std::string::npos) << j;
  EXPECT_NE(j.find(R"("verdict":"block","status":403)"), std::string::npos) << j;
  EXPECT_NE(j.find(R"("variable":"args","field":"msg")"), std::string::npos) << j;
}

TEST(waf_audit_drainer, writes_one_json_line_per_record_from_every_ring) {
  auto path = std::filesystem::temp_directory_path() /
              ("edge_waf_audit_" + std::to_string(getpid()) + ".log");
  std::filesystem::remove(path);
  edge::waf_audit_ring a(16), b(16);
  {
    auto d = edge::waf_audit_drainer::create(path.string());
    ASSERT_TRUE(d.has_value()) << d.error().str();
    (*d)->add_ring(&a);
    (*d)->add_ring(&b);
    (*d)->start(std::chrono::milliseconds(5));
    for (uint32_t i = 0; i < 10; ++i) (i % 2 ? a : b).push(rec(1000 + i));
    (*d)->stop();
    EXPECT_EQ((*d)->written(), 10u);
  }
  std::ifstream f(path);
  std::vector<std::string> lines;
  for (std::string l; std::getline(f, l);) lines.push_back(l);
  std::filesystem::remove(path);
  ASSERT_EQ(lines.size(), 10u);
  for (const auto& l : lines) {
    EXPECT_TRUE(l.starts_with("{\"ts_ms\":")) << l;
    EXPECT_TRUE(l.ends_with("}")) << l;
  }
  EXPECT_FALSE(edge::waf_audit_drainer::create("/proc/self/no-such-dir/audit.log").has_value());
}

}  // namespace
