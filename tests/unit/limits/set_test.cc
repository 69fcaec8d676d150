// limit_set over the ACL (rte_lpm/rte_lpm6) and the keyed tables: what a worker asks per packet,
// per accepted connection and per request; prefix parsing; 100,000 prefixes load time.
#include <gtest/gtest.h>

#include <chrono>

#include "limits/set.hh"
#include "test_eal.hh"

namespace {

using namespace limits;

prefix P(const char* s) {
  auto p = parse_prefix(s);
  EXPECT_TRUE(p.has_value()) << s;
  return p.value_or(prefix{});
}

flow v4flow(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  flow f;
  f.src = {a, b, c, d};
  f.vip = {10, 99, 0, 1};
  f.vip_port = 80;
  return f;
}

TEST(Prefix, ParsesAndRefuses) {
  struct row {
    const char* in;
    bool ok;
    const char* msg;
  } rows[] = {
      {"10.0.0.0/8", true, ""},
      {"192.0.2.1", true, ""},
      {"2001:db8::/32", true, ""},
      {"::1", true, ""},
      {"10.0.0.1/8", false, "host bits set in '10.0.0.1/8' beyond /8"},
      {"10.0.0.0/33", false, "bad prefix length '33' (0..32)"},
      {"10.0.0.0/", false, "bad prefix length '' (0..32)"},
      {"2001:db8::/129", false, "bad prefix length '129' (0..128)"},
      {"example.com", false, "not an IPv4 or IPv6 address: 'example.com'"},
  };
  for (const auto& r : rows) {
    auto p = parse_prefix(r.in);
    EXPECT_EQ(p.has_value(), r.ok) << r.in;
    if (!r.ok && !p) {
      EXPECT_EQ(p.error().message, r.msg) << r.in;
    }
  }
  auto t = parse_cidr_text("# deny\n10.0.0.0/8\n\n  192.0.2.0/24  # doc\nbogus\n", "deny.cidr");
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().str(), "deny.cidr:5: not an IPv4 or IPv6 address: 'bogus'");
}

TEST(Acl, LongestPrefixDecides) {
  acl_spec s{.service = "web", .where = "t", .lists = {}};
  s.lists.push_back({.name = "deny.cidr",
                     .where = "",
                     .deny = true,
                     .prefixes = {P("10.0.0.0/8"), P("2001:db8::/32")}});
  s.lists.push_back(
      {.name = "ok.cidr", .where = "", .deny = false, .prefixes = {P("10.1.0.0/16")}});
  auto a = acl::build(s);
  ASSERT_TRUE(a) << a.error().str();
  const uint8_t in_deny[4] = {10, 2, 3, 4}, in_allow[4] = {10, 1, 3, 4}, other[4] = {192, 0, 2, 1};
  EXPECT_TRUE((*a)->lookup(false, in_deny).denied);
  EXPECT_EQ((*a)->lookup(false, in_deny).list, 0);
  EXPECT_FALSE((*a)->lookup(false, in_allow).denied);
  EXPECT_EQ((*a)->lookup(false, in_allow).list, 1);
  // An allow list makes the default deny.
  EXPECT_TRUE((*a)->lookup(false, other).denied);
  EXPECT_EQ((*a)->lookup(false, other).list, -1);
  const auto v6 = P("2001:db8:1::1");
  EXPECT_TRUE((*a)->lookup(true, v6.addr.data()).denied);
}

TEST(Acl, HundredThousandPrefixesLoadUnderASecond) {
  acl_spec s{.service = "web", .where = "t", .lists = {}};
  acl_list l{.name = "big", .where = "", .deny = true, .prefixes = {}};
  for (uint32_t i = 0; i < 90000; ++i) {  // /24s and /28s (tbl8 groups) across 11.0.0.0/8..
    prefix p;
    p.len = i % 3 == 0 ? 28 : 24;
    p.addr = {static_cast<uint8_t>(11 + (i >> 16)), static_cast<uint8_t>(i >> 8),
              static_cast<uint8_t>(i), static_cast<uint8_t>(p.len == 28 ? 16 : 0)};
    l.prefixes.push_back(p);
  }
  for (uint32_t i = 0; i < 10000; ++i) {
    prefix p;
    p.v6 = true;
    p.len = 48;
    p.addr = {0x20, 0x01, 0x0d, 0xb8, static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i)};
    l.prefixes.push_back(p);
  }
  s.lists.push_back(std::move(l));
  const auto t0 = std::chrono::steady_clock::now();
  auto a = acl::build(s);
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(a) << a.error().str();
  EXPECT_EQ((*a)->prefixes(), 100000u);
  EXPECT_LT(sec, 1.0);
  RecordProperty("load_seconds", std::to_string(sec));
  const uint8_t hit[4] = {11, 0, 3, 17}, miss28[4] = {11, 0, 3, 1}, miss[4] = {9, 9, 9, 9};
  EXPECT_TRUE((*a)->lookup(false, hit).denied);      // i = 3: a /28 at .16
  EXPECT_FALSE((*a)->lookup(false, miss28).denied);  // outside that /28
  EXPECT_FALSE((*a)->lookup(false, miss).denied);
}

limit_spec spec(const char* name, scope w, key_kind k, uint64_t rate, uint64_t burst, action act) {
  limit_spec s;
  s.name = name;
  s.what = w;
  s.key = k;
  s.rate = rate;
  s.burst = burst;
  s.act = act;
  s.table_keys = 1024;
  return s;
}

// A reload finds the state of an unchanged limit whatever its table size (the registry compared
// a power-of-two rounding the table no longer makes: every reload of a 100000-key limit made a
// new table, reset every key's history and kept the old one).
TEST(LimitSet, ReloadKeepsTheStateForEveryTableSize) {
  for (const uint64_t keys : {uint64_t{1}, uint64_t{1000}, uint64_t{65536}, uint64_t{100000}}) {
    state_registry reg;
    limit_spec s = spec("req-src", scope::requests, key_kind::src, 10, 5, action::http_429);
    s.table_keys = keys;
    auto a = reg.get(s), b = reg.get(s);
    ASSERT_TRUE(a && b) << keys;
    EXPECT_EQ(*a, *b) << keys;
    EXPECT_EQ(reg.size(), 1u) << keys;
    // A different size is a different table.
    s.table_keys = keys + 4;
    auto c = reg.get(s);
    ASSERT_TRUE(c);
    EXPECT_NE(*c, *a) << keys;
  }
}

TEST(LimitSet, SynPerSourceAndAcl) {
  limits_config cfg;
  cfg.limits.push_back(spec("syn-src", scope::syn, key_kind::src, 10, 5, action::drop));
  cfg.limits.back().services = {"web"};
  cfg.acls.push_back(
      {.service = "web",
       .where = "",
       .lists = {
           {.name = "deny.cidr", .where = "", .deny = true, .prefixes = {P("203.0.113.0/24")}}}});
  state_registry reg;
  auto set = limit_set::build(cfg, reg);
  ASSERT_TRUE(set) << set.error().str();
  const service_limits* web = (*set)->service("web");
  ASSERT_NE(web, nullptr);
  EXPECT_EQ((*set)->service("other"), nullptr);
  const uint64_t now = 100 * units_per_s;
  EXPECT_EQ(limit_set::check_packet(*web, v4flow(203, 0, 113, 9), true, 60, now, 0).what,
            outcome::acl_denied);
  int passed = 0;
  for (int i = 0; i < 20; ++i)
    passed +=
        limit_set::check_packet(*web, v4flow(192, 0, 2, 1), true, 60, now, 1).what == outcome::pass;
  EXPECT_EQ(passed, 5);
  // Another source has its own bucket; non-SYN segments are not SYN-limited.
  EXPECT_EQ(limit_set::check_packet(*web, v4flow(192, 0, 2, 2), true, 60, now, 0).what,
            outcome::pass);
  EXPECT_EQ(limit_set::check_packet(*web, v4flow(192, 0, 2, 1), false, 60, now, 0).what,
            outcome::pass);
  // Counters by worker, summed.
  const limit_state& st = *(*set)->limit(0).state;
  EXPECT_EQ(st.sum(&limit_counts::allowed), 6u);
  EXPECT_EQ(st.sum(&limit_counts::limited), 15u);
  // A reload with the same limit keeps its state (same table): still limited.
  auto again = limit_set::build(cfg, reg);
  ASSERT_TRUE(again);
  EXPECT_EQ((*again)->limit(0).state, &st);
  EXPECT_EQ(
      limit_set::check_packet(*(*again)->service("web"), v4flow(192, 0, 2, 1), true, 60, now, 0)
          .what,
      outcome::limited);
}

TEST(LimitSet, PrefixKeyConcurrentAndDetectOnly) {
  limits_config cfg;
  cfg.limits.push_back(spec("conc24", scope::concurrent, key_kind::src_prefix, 2, 0, action::rst));
  cfg.limits.back().prefix_v4 = 24;
  cfg.limits.push_back(spec("conn-detect", scope::conn, key_kind::src, 1, 1, action::rst));
  cfg.limits.back().detect_only = true;
  state_registry reg;
  auto set = limit_set::build(cfg, reg);
  ASSERT_TRUE(set) << set.error().str();
  const service_limits* any = (*set)->service("anything");  // no service list: every service
  ASSERT_NE(any, nullptr);
  conn_hold h1, h2, h3;
  const uint64_t now = 100 * units_per_s;
  EXPECT_EQ(limit_set::check_accept(*any, v4flow(192, 0, 2, 1), now, 0, h1).what, outcome::pass);
  EXPECT_EQ(limit_set::check_accept(*any, v4flow(192, 0, 2, 2), now, 0, h2).what, outcome::pass);
  const decision d = limit_set::check_accept(*any, v4flow(192, 0, 2, 3), now, 0, h3);
  EXPECT_EQ(d.what, outcome::limited);  // same /24 holds 2
  EXPECT_EQ(d.act, action::rst);
  EXPECT_EQ(d.by->spec.name, "conc24");
  EXPECT_EQ(h3.n, 0);
  h1.release();
  EXPECT_EQ(limit_set::check_accept(*any, v4flow(192, 0, 2, 3), now, 0, h3).what, outcome::pass);
  // .3 again within the second: over conn-detect (1/s per source), which only counts it.
  h2.release();
  conn_hold h4;
  EXPECT_EQ(limit_set::check_accept(*any, v4flow(192, 0, 2, 3), now, 0, h4).what, outcome::pass);
  EXPECT_EQ((*set)->limit(1).state->sum(&limit_counts::detected), 1u);
  EXPECT_EQ((*set)->limit(1).state->sum(&limit_counts::limited), 0u);
}

TEST(LimitSet, RequestsByRouteAndHeader) {
  limits_config cfg;
  auto login = spec("login", scope::requests, key_kind::src, 1, 2, action::http_429);
  login.method = "POST";
  login.path_prefix = "/login";
  cfg.limits.push_back(login);
  cfg.limits.push_back(spec("by-key", scope::requests, key_kind::header, 1, 1, action::http_429));
  cfg.limits.back().header = "x-api-key";
  state_registry reg;
  auto set = limit_set::build(cfg, reg);
  ASSERT_TRUE(set);
  const service_limits* any = (*set)->service("web");
  const uint64_t now = 100 * units_per_s;
  auto no_header = [](const void*, std::string_view) { return std::string_view{}; };
  auto key_a = [](const void*, std::string_view n) {
    return n == "x-api-key" ? std::string_view{"a"} : std::string_view{};
  };
  request_info post{
      .method = "POST", .path = "/login/x", .sni = {}, .header = no_header, .ctx = nullptr};
  request_info get{
      .method = "GET", .path = "/login", .sni = {}, .header = no_header, .ctx = nullptr};
  request_info other{
      .method = "POST", .path = "/loginx", .sni = {}, .header = no_header, .ctx = nullptr};
  const flow f = v4flow(192, 0, 2, 1);
  EXPECT_EQ(limit_set::check_request(*any, f, post, now, 0).what, outcome::pass);
  EXPECT_EQ(limit_set::check_request(*any, f, post, now, 0).what, outcome::pass);
  const decision d = limit_set::check_request(*any, f, post, now, 0);
  EXPECT_EQ(d.what, outcome::limited);
  EXPECT_EQ(d.act, action::http_429);
  EXPECT_EQ(d.retry_after_s(), 1u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(limit_set::check_request(*any, f, get, now, 0).what, outcome::pass);
    EXPECT_EQ(limit_set::check_request(*any, f, other, now, 0).what, outcome::pass);
  }
  request_info keyed{.method = "GET", .path = "/", .sni = {}, .header = key_a, .ctx = nullptr};
  EXPECT_EQ(limit_set::check_request(*any, f, keyed, now, 0).what, outcome::pass);
  EXPECT_EQ(limit_set::check_request(*any, v4flow(1, 2, 3, 4), keyed, now, 0).what,
            outcome::limited);
}

}  // namespace

EDGE_TEST_MAIN_WITH_EAL()
