// Issue 10, defect 6: ACK floods and side channels. ACKs answering invalid segments are limited
// per connection (tcp_invalid_ratelimit), the worker's challenge-ACK budget is randomised
// (CVE-2016-5696), and the SYN cookie key rotates with the previous key still validating.
#include <functional>
#include <set>

#include "syn_cookie.hh"
#include "tcp_harness.hh"

using namespace tcp_test;
using l4::drop;

namespace {

class side_channel : public harness {};

// Each kind of invalid segment, flooded: one ACK, then silence for invalid_ack_interval_ms, the
// rest counted; after the interval one more.
TEST_F(side_channel, invalid_segment_acks_are_limited_per_connection) {
  struct row {
    const char* name;
    drop expect;
    std::function<drop()> send;
  };
  const row rows[] = {
      {"PAWS (old TSval)", drop::tcp_paws,
       [this] { return inject(ACK, cisn + 1, siss + 1, bytes(10), opt_ts(tsv - 1000, srv_ts)); }},
      {"beyond the receive window", drop::tcp_out_of_window,
       [this] { return cseg(ACK, 1u << 20, 0, bytes(10)); }},
      {"ACK of data never sent", drop::tcp_bad_ack, [this] { return cseg(ACK, 0, 5000); }},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.name);
    st.reset();
    app = recorder{};
    start();
    establish();
    drain();
    const uint64_t limited = st->stats().acks_rate_limited.get();
    for (int i = 0; i < 50; ++i) EXPECT_EQ(r.send(), r.expect);
    EXPECT_EQ(drain().size(), 1u) << "50 invalid segments must draw one ACK, not 50";
    EXPECT_EQ(st->stats().acks_rate_limited.get(), limited + 49);
    advance_ms(cfg.invalid_ack_interval_ms - 1);
    EXPECT_EQ(r.send(), r.expect);
    EXPECT_TRUE(drain().empty());
    advance_ms(1);
    EXPECT_EQ(r.send(), r.expect);
    EXPECT_EQ(drain().size(), 1u);
  }
}

// The limit is per connection: one peer's flood does not silence another connection's answers.
TEST_F(side_channel, one_connection_flood_does_not_limit_another) {
  start();
  establish();
  const uint32_t siss_a = siss;
  b.sport = 40001;
  establish();
  for (int i = 0; i < 20; ++i) cseg(RST, 100, 0);  // connection B
  EXPECT_EQ(drain().size(), 1u);
  b.sport = 40000;
  siss = siss_a;
  EXPECT_EQ(cseg(RST, 100, 0), drop::tcp_rst_challenged);  // connection A: still answered
  EXPECT_EQ(drain().size(), 1u);
}

// The worker-wide challenge budget is drawn each second in [limit/2, 3*limit/2): an off-path
// host exhausting it cannot count how many ACKs a victim connection used (CVE-2016-5696).
TEST_F(side_channel, challenge_ack_budget_is_randomised_per_second) {
  cfg.challenge_acks_per_s = 8;
  cfg.max_connections = 64;
  start();
  struct conn {
    uint16_t port;
    uint32_t siss;
  };
  std::vector<conn> conns;
  for (uint16_t i = 0; i < 24; ++i) {
    b.sport = static_cast<uint16_t>(41000 + i);
    establish(false);
    conns.push_back({b.sport, siss});
  }
  drain();
  std::multiset<size_t> per_second;
  for (int sec = 0; sec < 12; ++sec) {
    advance_ms(1000);
    for (const auto& c : conns) {
      b.sport = c.port;
      EXPECT_EQ(inject(RST, cisn + 1 + 100, 0), drop::tcp_rst_challenged);
    }
    const size_t sent = drain().size();
    EXPECT_GE(sent, 4u);
    EXPECT_LT(sent, 12u);
    per_second.insert(sent);
  }
  // A fixed budget gives 8 every second; a drawn one varies.
  EXPECT_LT(per_second.count(8), per_second.size()) << "the budget is the same every second";
  EXPECT_GT(st->stats().acks_rate_limited.get(), 0u);
}

// Cookie keys rotate; a cookie validates under the current and the previous key only. Same clock
// for every check, so it is the key, not the cookie counter, that expires the old cookie.
TEST(syn_cookie_keys, previous_key_validates_two_keys_ago_does_not) {
  using namespace l4::tcp;
  sip_key secret{};
  secret[0] = 42;
  const sip_key isn_key = derive_key(secret, "isn");
  syn_cookies c(derive_key(secret, "syn-cookie", 1), isn_key);
  four_tuple t{*l4::ip_addr::parse("198.51.100.7"), *l4::ip_addr::parse("10.0.0.1"), 40000, 443};
  const uint64_t now_s = 100;
  uint16_t mss = 0;
  const uint32_t cookie = c.make(t, 7777, 1460, 0, now_s, mss);
  EXPECT_EQ(mss, 1460);
  ASSERT_TRUE(c.check(t, 7777, cookie, 0, now_s).has_value());
  c.rotate(derive_key(secret, "syn-cookie", 2));
  const auto prev = c.check(t, 7777, cookie, 0, now_s);
  ASSERT_TRUE(prev.has_value()) << "a cookie from the previous key must validate";
  EXPECT_EQ(prev->mss, 1460);
  c.rotate(derive_key(secret, "syn-cookie", 3));
  EXPECT_FALSE(c.check(t, 7777, cookie, 0, now_s).has_value()) << "two keys ago must not";
  // A cookie made now validates; the keys of the periods and the ISN key all differ.
  const uint32_t fresh = c.make(t, 7777, 1460, 0, now_s, mss);
  EXPECT_TRUE(c.check(t, 7777, fresh, 0, now_s).has_value());
  EXPECT_NE(derive_key(secret, "syn-cookie", 2), derive_key(secret, "syn-cookie", 3));
  EXPECT_NE(derive_key(secret, "syn-cookie", 2), isn_key);
  EXPECT_NE(derive_key(secret, "flow-hash"), isn_key);
}

// Through the stack: the key rotates every 64 s (counted); a SYN-ACK sent before a rotation is
// still accepted after it.
TEST_F(side_channel, cookie_from_before_a_rotation_validates) {
  cfg.cookies = l4::tcp::cookie_mode::always;
  now = 64'000'000ull * 1000 + 60'000'000;  // 4 s before a 64 s boundary
  start();
  ASSERT_EQ(inject(SYN, cisn, 0, {}, opt_mss(1460)), drop::none);
  const auto sa = one();
  ASSERT_EQ(sa.flags, SYN | ACK);
  const uint64_t rot = st->stats().cookie_key_rotations.get();
  advance_ms(10'000);
  EXPECT_EQ(st->stats().cookie_key_rotations.get(), rot + 1);
  EXPECT_EQ(inject(ACK, cisn + 1, sa.seq + 1), drop::none);
  EXPECT_EQ(st->stats().cookies_validated.get(), 1u);
  EXPECT_EQ(app.accepted.size(), 1u);
}

// Two rotations later the same cookie is refused (and counted), with a RST.
TEST_F(side_channel, cookie_from_two_rotations_ago_is_refused) {
  cfg.cookies = l4::tcp::cookie_mode::always;
  now = 64'000'000ull * 1000 + 60'000'000;
  start();
  ASSERT_EQ(inject(SYN, cisn, 0, {}, opt_mss(1460)), drop::none);
  const auto sa = one();
  advance_ms(70'000);
  EXPECT_EQ(inject(ACK, cisn + 1, sa.seq + 1), drop::tcp_cookie_invalid);
  EXPECT_EQ(st->stats().cookies_failed.get(), 1u);
  EXPECT_EQ(one().flags, RST);
}

}  // namespace

EDGE_TEST_MAIN_WITH_EAL()
