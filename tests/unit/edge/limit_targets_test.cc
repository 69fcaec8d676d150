// Which service can enforce which limit (edge/limit_targets.hh), through the real limit-file loader
// so that a refusal names the file:line:col a user edits; the l4 services' limits (named ones
// only, never the "every tcp/tls service" default); and the limits-only rules control plane (no
// service has a WAF policy): load, atomic reload, a refused file keeps the serving set.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "edge/inspection/waf_control.hh"
#include "edge/limit_targets.hh"
#include "edge/limits_hook.hh"
#include "edge/snapshot.hh"
#include "l4/parse.hh"
#include "limits/set.hh"
#include "packet_builder.hh"
#include "rules/limits_file.hh"
#include "test_eal.hh"

namespace {

namespace fs = std::filesystem;

struct temp_dir {
  fs::path path;
  temp_dir() {
    path = fs::temp_directory_path() /
           ("edge-limit-targets-" + std::to_string(getpid()) + "-" + std::to_string(counter()++));
    fs::create_directories(path);
  }
  ~temp_dir() { fs::remove_all(path); }
  static int& counter() {
    static int n = 0;
    return n;
  }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name) << text;
  }
};

edge::service_config svc(const char* name, edge::service_kind k, bool waf, uint8_t proto = 6) {
  edge::service_config s;
  s.name = name;
  s.kind = k;
  s.waf = waf;
  s.protocol = proto;
  return s;
}

// web: tcp + WAF; plain: tcp, no WAF; secure: tls, no WAF; fwd: l4 TCP; dns: l4 UDP.
edge::config services() {
  edge::config c;
  c.services = {
      svc("web", edge::service_kind::tcp, true), svc("plain", edge::service_kind::tcp, false),
      svc("secure", edge::service_kind::tls, false), svc("fwd", edge::service_kind::l4, false),
      svc("dns", edge::service_kind::l4, false, 17)};
  return c;
}

// One limit naming `service` with `scope` (and `action` when not empty), on line 2 of the file.
std::string one_limit(const std::string& service, const std::string& scope,
                      const std::string& action = "") {
  return "limits:\n  - name: l\n    services: [" + service + "]\n    scope: " + scope +
         "\n    key: src\n    rate: 10\n" + (action.empty() ? "" : "    action: " + action + "\n");
}

TEST(LimitTargets, WhatEachKindEnforces) {
  struct row {
    const char* service;
    const char* scope;
    const char* action;
    const char* error;  // empty: accepted
  } rows[] = {
      // tcp/tls with a WAF: every scope.
      {"web", "syn", "rst", ""},
      {"web", "conn", "", ""},
      {"web", "concurrent", "", ""},
      {"web", "requests", "", ""},
      // tcp/tls without a WAF: all but requests.
      {"plain", "syn", "drop", ""},
      {"plain", "packets", "", ""},
      {"plain", "bytes", "", ""},
      {"plain", "conn", "", ""},
      {"plain", "concurrent", "", ""},
      {"plain", "requests", "",
       "limit l: scope requests on service 'plain' (kind tcp): requests are counted once the WAF's "
       "parser has a request head, and this service has no waf policy"},
      {"secure", "requests", "",
       "limit l: scope requests on service 'secure' (kind tls): requests are counted once the "
       "WAF's "
       "parser has a request head, and this service has no waf policy"},
      {"secure", "concurrent", "", ""},
      // l4: syn (TCP), packets, bytes.
      {"fwd", "syn", "drop", ""},
      {"fwd", "syn", "rst", ""},
      {"fwd", "packets", "", ""},
      {"fwd", "bytes", "", ""},
      {"fwd", "conn", "",
       "limit l: scope conn on service 'fwd' (kind l4): kind l4 forwards packets and sees no "
       "handshake or connection end; use syn, packets or bytes"},
      {"fwd", "concurrent", "",
       "limit l: scope concurrent on service 'fwd' (kind l4): kind l4 forwards packets and sees no "
       "handshake or connection end; use syn, packets or bytes"},
      {"fwd", "requests", "",
       "limit l: scope requests on service 'fwd' (kind l4): kind l4 does not parse requests; use "
       "syn, packets or bytes"},
      {"dns", "packets", "", ""},
      {"dns", "syn", "",
       "limit l: scope syn on service 'dns' (kind l4): a syn limit needs TCP; this l4 service is "
       "UDP"},
      // A name the configuration lacks: not an error (a later config may add it).
      {"absent", "requests", "", ""},
  };
  const edge::config c = services();
  for (const auto& r : rows) {
    temp_dir d;
    d.write("t.limits.yaml", one_limit(r.service, r.scope, r.action));
    auto lc = rules::load_limits_dir(d.path.string());
    ASSERT_TRUE(lc) << r.service << " " << r.scope << ": " << lc.error().str();
    auto ok = edge::check_limit_targets(*lc, c);
    const std::string what = std::string(r.service) + " " + r.scope;
    if (*r.error == '\0') {
      EXPECT_TRUE(ok) << what << ": " << ok.error().str();
      continue;
    }
    ASSERT_FALSE(ok) << what;
    // The limit's own entry: file:line:col of its `- name:` item.
    EXPECT_EQ(ok.error().str(), (d.path / "t.limits.yaml").string() + ":2:5: " + r.error) << what;
  }
}

TEST(LimitTargets, L4ServicesTakeOnlyTheLimitsNamingThem) {
  temp_dir d;
  d.write("t.limits.yaml",
          "limits:\n"
          "  - {name: every, scope: conn, key: src, rate: 5}\n"
          "  - {name: every-syn, scope: syn, key: src, rate: 5}\n"
          "  - {name: fwd-syn, services: [fwd], scope: syn, key: src, rate: 1, burst: 2}\n"
          "acl:\n"
          "  - {service: fwd, deny: [192.0.2.0/24]}\n");
  auto lc = rules::load_limits_dir(d.path.string());
  ASSERT_TRUE(lc) << lc.error().str();
  const edge::config c = services();
  edge::mark_explicit_only(*lc, c);
  ASSERT_TRUE(edge::check_limit_targets(*lc, c));
  limits::state_registry reg;
  auto set = limits::limit_set::build(*lc, reg);
  ASSERT_TRUE(set) << set.error().str();
  const limits::service_limits* fwd = (*set)->named("fwd");
  ASSERT_NE(fwd, nullptr);
  ASSERT_EQ(fwd->packet.size(), 1u);  // fwd-syn only: not every-syn
  EXPECT_EQ(fwd->packet[0]->spec.name, "fwd-syn");
  EXPECT_TRUE(fwd->accept.empty());  // not `every` (conn)
  EXPECT_NE(fwd->acl_table, nullptr);
  // An l4 service nothing names has no limits (the tcp/tls default does not reach it)...
  EXPECT_EQ((*set)->named("dns"), nullptr);
  // ...while an unnamed tcp service gets the limits with no service list.
  const limits::service_limits* plain = (*set)->service("plain");
  ASSERT_NE(plain, nullptr);
  EXPECT_EQ(plain->accept.size(), 1u);
  EXPECT_EQ(plain->packet.size(), 1u);
  EXPECT_EQ((*set)->named("plain"), nullptr);
}

// The l4 path as the worker runs it (lb_classify): the snapshot finds the l4 service's limits by
// VIP:port:protocol, limits_packet gives the verdict on the parsed frame.
TEST(LimitTargets, L4PacketVerdicts) {
  temp_dir d;
  d.write("t.limits.yaml",
          "limits:\n"
          "  - {name: every-syn, scope: syn, key: src, rate: 1, burst: 1}\n"
          "  - {name: fwd-syn, services: [fwd], scope: syn, key: src, rate: 1, burst: 2, "
          "action: rst}\n"
          "  - {name: dns-pps, services: [dns], scope: packets, key: src, rate: 1, burst: 3}\n"
          "acl:\n"
          "  - {service: fwd, deny: [192.0.2.0/24]}\n");
  auto lc = rules::load_limits_dir(d.path.string());
  ASSERT_TRUE(lc) << lc.error().str();
  auto cfg = std::make_shared<edge::config>(services());
  auto vip = [](const char* a) {
    auto ip = l4::ip_addr::parse(a);
    EXPECT_TRUE(ip.has_value()) << a;
    return ip.value_or(l4::ip_addr{});
  };
  for (auto& s : cfg->services) {
    s.vip = vip(s.name == "dns" ? "198.51.100.2" : "198.51.100.1");
    s.port = s.name == "dns" ? 53 : s.name == "fwd" ? 80 : 8080;
  }
  edge::mark_explicit_only(*lc, *cfg);
  ASSERT_TRUE(edge::check_limit_targets(*lc, *cfg));
  limits::state_registry reg;
  auto set = limits::limit_set::build(*lc, reg);
  ASSERT_TRUE(set) << set.error().str();
  auto rules = std::make_shared<edge::waf_rules_snapshot>();
  rules->limits = *set;
  edge::snapshot snap;
  snap.cfg = cfg;
  snap.waf = rules;
  snap.index_services();  // as appliance::republish does: find_service goes through it
  snap.attach_l4_limits();
  ASSERT_TRUE(snap.any_l4_limits);

  struct row {
    const char* what;
    const char* src;
    const char* dst;
    uint8_t proto;
    uint16_t dport;
    uint8_t flags;
    bool has_limits;  // the snapshot finds limits for the destination
    edge::segment_verdict want;
  } rows[] = {
      {"denied source, SYN", "192.0.2.9", "198.51.100.1", IPPROTO_TCP, 80, 0x02, true,
       edge::segment_verdict::acl_denied},
      {"denied source, ACK", "192.0.2.9", "198.51.100.1", IPPROTO_TCP, 80, 0x10, true,
       edge::segment_verdict::acl_denied},
      {"first SYN (burst 2)", "203.0.113.1", "198.51.100.1", IPPROTO_TCP, 80, 0x02, true,
       edge::segment_verdict::pass},
      {"second SYN: not every-syn's burst of 1 (unnamed: not for l4)", "203.0.113.1",
       "198.51.100.1", IPPROTO_TCP, 80, 0x02, true, edge::segment_verdict::pass},
      {"third SYN: over fwd-syn, answered with a RST", "203.0.113.1", "198.51.100.1", IPPROTO_TCP,
       80, 0x02, true, edge::segment_verdict::limited_rst},
      {"an ACK is not a SYN", "203.0.113.1", "198.51.100.1", IPPROTO_TCP, 80, 0x10, true,
       edge::segment_verdict::pass},
      {"a SYN-ACK is not a SYN", "203.0.113.1", "198.51.100.1", IPPROTO_TCP, 80, 0x12, true,
       edge::segment_verdict::pass},
      {"another source has its own bucket", "203.0.113.2", "198.51.100.1", IPPROTO_TCP, 80, 0x02,
       true, edge::segment_verdict::pass},
      {"UDP 1 (burst 3)", "203.0.113.1", "198.51.100.2", IPPROTO_UDP, 53, 0, true,
       edge::segment_verdict::pass},
      {"UDP 2", "203.0.113.1", "198.51.100.2", IPPROTO_UDP, 53, 0, true,
       edge::segment_verdict::pass},
      {"UDP 3", "203.0.113.1", "198.51.100.2", IPPROTO_UDP, 53, 0, true,
       edge::segment_verdict::pass},
      {"UDP 4: over dns-pps, dropped", "203.0.113.1", "198.51.100.2", IPPROTO_UDP, 53, 0, true,
       edge::segment_verdict::limited_drop},
      {"the tcp service's port: not an l4 service", "203.0.113.1", "198.51.100.1", IPPROTO_TCP,
       8080, 0x02, false, edge::segment_verdict::pass},
      {"UDP to the TCP VIP:port: no service", "203.0.113.1", "198.51.100.1", IPPROTO_UDP, 80, 0,
       false, edge::segment_verdict::pass},
  };
  const uint64_t now = rte_get_tsc_cycles();
  for (const auto& r : rows) {
    edge_test::packet_builder b;
    b.from(r.src).to(r.dst);
    b.proto = r.proto;
    b.dport = r.dport;
    b.tcp_flags = r.flags;
    rte_mbuf* m = edge_test::to_mbuf(edge_test::mempool(), b.bytes());
    ASSERT_NE(m, nullptr);
    l4::packet p;
    ASSERT_EQ(l4::parse(m, p), l4::drop::none) << r.what;
    const limits::service_limits* sl = snap.l4_limits_for(p.dst, p.dport, p.proto);
    EXPECT_EQ(sl != nullptr, r.has_limits) << r.what;
    const auto v =
        sl != nullptr ? edge::limits_packet(*sl, p, now, 0) : edge::segment_verdict::pass;
    EXPECT_EQ(v, r.want) << r.what;
    rte_pktmbuf_free(m);
  }
}

// No service has a WAF policy: the control plane loads only the limit files; a reload swaps the
// whole set, and a file a service cannot enforce is refused with file:line:col while the
// previous generation keeps serving.
TEST(LimitTargets, LimitsOnlyControlReloadsAtomically) {
  temp_dir d;
  d.write("a.limits.yaml", one_limit("plain", "conn"));
  const edge::config c = services();
  limits::state_registry reg;
  std::vector<std::shared_ptr<const edge::waf_rules_snapshot>> published;
  edge::waf_control_config wc{.rules_dir = d.path.string(), .cache_dir = {}, .services = {}};
  wc.limit_registry = &reg;
  wc.compile_rules = false;
  wc.debounce = std::chrono::milliseconds(1);
  wc.check_limits = [&c](limits::limits_config& lc) {
    edge::mark_explicit_only(lc, c);
    return edge::check_limit_targets(lc, c);
  };
  auto ctl = edge::waf_control::create(std::move(wc), [&](auto s) { published.push_back(s); });
  ASSERT_TRUE(ctl) << ctl.error().str();
  ASSERT_EQ(published.size(), 1u);
  EXPECT_EQ(published[0]->rules, nullptr);  // no WAF rules compiled
  ASSERT_NE(published[0]->limits, nullptr);
  EXPECT_EQ(published[0]->limits->limit_count(), 1u);
  EXPECT_EQ(published[0]->generation, 1u);

  // A second file: both limits, in one new generation.
  d.write("b.limits.yaml",
          "limits:\n  - {name: fwd-pps, services: [fwd], scope: packets, key: src, rate: 9}\n");
  auto g = (*ctl)->reload();
  ASSERT_TRUE(g) << g.error().str();
  EXPECT_EQ(*g, 2u);
  ASSERT_EQ(published.size(), 2u);
  EXPECT_EQ(published[1]->limits->limit_count(), 2u);
  ASSERT_NE(published[1]->limits->named("fwd"), nullptr);

  // A conn limit on the l4 service: refused with its location, nothing published.
  d.write("c.limits.yaml",
          "limits:\n  - name: fwd-conn\n    services: [fwd]\n    scope: conn\n    rate: 1\n");
  auto bad = (*ctl)->reload();
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().str(), (d.path / "c.limits.yaml").string() +
                                   ":2:5: limit fwd-conn: scope conn on service 'fwd' (kind l4): "
                                   "kind l4 forwards packets and sees no handshake or connection "
                                   "end; use syn, packets or bytes");
  EXPECT_EQ(published.size(), 2u);
  EXPECT_EQ((*ctl)->current()->generation, 2u);
  EXPECT_EQ((*ctl)->current()->limits->limit_count(), 2u);
  EXPECT_EQ((*ctl)->metrics().reloads_failed, 1u);
}

}  // namespace

EDGE_TEST_MAIN_WITH_EAL()
