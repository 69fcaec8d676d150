// Config validation: every file in bad_configs/ must be refused with the message and position on
// its first line ("# expect: LINE:COL: MESSAGE"); the shipped examples must load.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "edge/config.hh"

namespace fs = std::filesystem;

namespace {

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const char* source_dir() {
  return EDGE_TEST_SOURCE_DIR;
}

std::vector<fs::path> bad_files() {
  std::vector<fs::path> v;
  for (const auto& e : fs::directory_iterator(fs::path(source_dir()) / "bad_configs"))
    v.push_back(e.path());
  std::sort(v.begin(), v.end());
  return v;
}

class bad_config : public ::testing::TestWithParam<fs::path> {};

TEST_P(bad_config, is_refused_with_location_and_message) {
  const fs::path p = GetParam();
  const std::string text = read(p);
  const std::string first = text.substr(0, text.find('\n'));
  ASSERT_EQ(first.rfind("# expect: ", 0), 0u) << p << " lacks its '# expect:' line";
  const std::string expected = first.substr(10);
  auto c = edge::parse_config(text, "test.yaml");
  ASSERT_FALSE(c.has_value()) << p << " was accepted";
  EXPECT_EQ(c.error().str(), "test.yaml:" + expected) << p;
}

INSTANTIATE_TEST_SUITE_P(files, bad_config, ::testing::ValuesIn(bad_files()),
                         [](const auto& param_info) { return param_info.param.stem().string(); });

TEST(config, full_example_loads_with_defaults) {
  auto c = edge::parse_config(R"(
eal:
  args: [--no-huge, -m, "512"]
ports:
  - name: wan0
    role: wan
    device: net_af_packet0,iface=dut0
    addresses: [10.99.0.1/24, "fd00:99::1/64"]
  - {name: lan0, role: lan, device: "net_af_packet1,iface=lan0", mtu: 9000}
workers:
  lcores: [1, 2]
admin:
  listen: "[::1]:9999"
logging: {level: debug, format: json}
pools:
  - name: gw
    proxy_protocol: false
    health_check: {type: http, path: /healthz, interval_ms: 500, timeout_ms: 200, rise: 1, fall: 2}
    backends:
      - {address: 10.99.1.10, port: 8080, weight: 3}
      - {address: "fd00:1::10", port: 8080}
)",
                              "ok.yaml");
  ASSERT_TRUE(c.has_value()) << c.error().str();
  EXPECT_EQ(c->eal_args.size(), 3u);
  ASSERT_EQ(c->ports.size(), 2u);
  EXPECT_EQ(c->ports[0].addresses[1].str(), "fd00:99::1/64");
  EXPECT_EQ(c->ports[0].mtu, 1500);
  EXPECT_EQ(c->ports[1].mtu, 9000);
  EXPECT_EQ(c->ports[1].role, edge::port_role::lan);
  EXPECT_EQ(c->workers.lcores, (std::vector<unsigned>{1, 2}));
  EXPECT_EQ(c->workers.burst, 32u);
  EXPECT_EQ(c->admin.address.str(), "::1");
  EXPECT_EQ(c->admin.port, 9999);
  EXPECT_EQ(c->logging.format, edge::log_format::json);
  ASSERT_EQ(c->pools.size(), 1u);
  EXPECT_FALSE(c->pools[0].proxy_protocol);
  EXPECT_EQ(c->pools[0].health.kind, edge::health_check_config::type::http);
  EXPECT_EQ(c->pools[0].health.fall, 2u);
  EXPECT_EQ(c->pools[0].backends[0].weight, 3u);
  EXPECT_EQ(c->pools[0].backends[1].weight, 1u);
}

TEST(config, each_kind_is_accepted_when_built_and_refused_by_name_otherwise) {
  for (auto kind : {edge::service_kind::l4, edge::service_kind::tcp, edge::service_kind::tls}) {
    const std::string text = std::string(R"(
ports: [{name: wan0, role: wan, device: net_ring0}, {name: lan0, role: lan, device: net_ring1}]
workers: {lcores: [1]}
l4: {snat_addresses: [10.0.1.100]}
pools: [{name: p, backends: [{address: 10.0.1.1, port: 80}]}]
services: [{name: s, vip: 10.0.0.1, port: 80, pool: p, kind: )") +
                             edge::to_string(kind) +
                             (kind == edge::service_kind::tls
                                  ? ", tls: {certificates: [{cert: /etc/passwd, key: /etc/passwd}]}"
                                  : "") +
                             "}]\n";
    auto c = edge::parse_config(text, "k.yaml");
    if (edge::service_kind_built(kind)) {
      EXPECT_TRUE(c.has_value()) << edge::to_string(kind) << ": " << c.error().str();
    } else {
      ASSERT_FALSE(c.has_value());
      EXPECT_NE(c.error().message.find("is not available in this build"), std::string::npos)
          << c.error().str();
    }
  }
}

// A tls service offers in ALPN what its pool's backends speak (issue 17 item 6): http/1.1 by
// default, so curl and browsers never speak HTTP/2 to an HTTP/1.1 backend.
TEST(config, alpn_default_follows_the_pool_protocol) {
  struct row {
    const char* pool_protocol;  // empty: the default
    const char* waf;
    std::vector<std::string> alpn;
  } rows[] = {
      {"", "", {"http/1.1"}},
      {"protocol: http1", "", {"http/1.1"}},
      {"protocol: h2c", "", {"h2"}},
      {"protocol: any", "", {"h2", "http/1.1"}},
      {"protocol: any", "waf: {policy: {mode: enforce}}", {"http/1.1"}},
  };
  for (const auto& r : rows) {
    const std::string text = std::string(R"(
ports:
  - {name: wan0, role: wan, device: net_ring0}
workers:
  lcores: [1]
waf:
  rules_dir: /tmp
pools:
  - name: web
    )") + (*r.pool_protocol ? r.pool_protocol : "proxy_protocol: true") +
                             R"(
    backends: [{address: 10.0.1.10, port: 80}]
services:
  - name: web
    vip: 10.0.0.100
    port: 443
    kind: tls
    pool: web
    )" + (*r.waf ? r.waf : "max_connections: 10") +
                             R"(
    tls:
      certificates: [{cert: /etc/passwd, key: /etc/passwd}]
)";
    auto c = edge::parse_config(text, "test.yaml");
    ASSERT_TRUE(c.has_value()) << r.pool_protocol << " " << r.waf << ": " << c.error().str();
    EXPECT_EQ(c->services[0].tls.alpn, r.alpn) << r.pool_protocol << " " << r.waf;
  }
}

TEST(config, missing_file_is_an_error_naming_it) {
  auto c = edge::load_config("/nonexistent/edged.yaml");
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().where, "/nonexistent/edged.yaml");
}

TEST(config, shipped_examples_are_valid) {
  const fs::path dir = fs::path(source_dir()) / ".." / ".." / ".." / "deploy" / "examples";
  if (!fs::exists(dir)) GTEST_SKIP() << "no deploy/examples";
  // The examples' certificate and keys are never committed: made as the examples README says.
  ASSERT_EQ(std::system(("sh " + (dir / "certs" / "make-certs.sh").string()).c_str()), 0);
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".yaml") continue;
    auto c = edge::load_config(e.path().string());
    EXPECT_TRUE(c.has_value()) << (c ? "" : c.error().str());
    ++n;
  }
  EXPECT_GT(n, 0u);
}

}  // namespace

TEST(config, offload_threads_default_to_a_count_derived_from_the_workers) {
  const char* head = R"(
ports:
  - {name: wan0, role: wan, device: net_ring0}
workers:
  lcores: [0, 1, 2, 3, 4]
)";
  for (const auto& [tls_block, want] : std::vector<std::pair<std::string, unsigned>>{
           {"", 0}, {"tls: {offload_threads: auto}\n", 0}, {"tls: {offload_threads: 3}\n", 3}}) {
    auto c = edge::parse_config(head + tls_block, "test.yaml");
    ASSERT_TRUE(c.has_value()) << c.error().str();
    EXPECT_EQ(c->tls.offload_threads, want) << tls_block;
  }
  // auto: one per two workers, at least one, at most the CPUs no worker is pinned to; one when
  // every CPU has a worker.
  EXPECT_EQ(edge::offload_threads_for(0, 1, 1), 1u);
  EXPECT_EQ(edge::offload_threads_for(0, 2, 0), 1u);
  EXPECT_EQ(edge::offload_threads_for(0, 5, 8), 3u);
  EXPECT_EQ(edge::offload_threads_for(0, 16, 16), 8u);
  EXPECT_EQ(edge::offload_threads_for(0, 16, 2), 2u);
  EXPECT_EQ(edge::offload_threads_for(0, 16, 0), 1u);
  EXPECT_EQ(edge::offload_threads_for(0, 128, 128), 64u);
  EXPECT_EQ(edge::offload_threads_for(4, 16, 2), 4u);  // configured: as given
}

TEST(config, static_neighbors_and_dispatch_mode_load) {
  auto c = edge::parse_config(R"(
ports:
  - name: lan0
    role: wan
    device: net_ring0
    neighbors: [{address: 10.0.1.5, mac: "02:bb:00:00:00:05"}, {address: "fd00:1::5", mac: "02:BB:00:00:00:06"}]
workers:
  lcores: [0, 1]
  dispatch: software
)",
                              "test.yaml");
  ASSERT_TRUE(c.has_value()) << c.error().str();
  ASSERT_EQ(c->ports[0].neighbors.size(), 2u);
  EXPECT_EQ(c->ports[0].neighbors[0].first, *l4::ip_addr::parse("10.0.1.5"));
  EXPECT_EQ(c->ports[0].neighbors[0].second, (std::array<uint8_t, 6>{0x02, 0xbb, 0, 0, 0, 5}));
  EXPECT_EQ(c->ports[0].neighbors[1].second, (std::array<uint8_t, 6>{0x02, 0xbb, 0, 0, 0, 6}));
  EXPECT_EQ(c->workers.dispatch, edge::worker_config::dispatch_mode::software);
  EXPECT_EQ(c->workers.snat_steering, edge::worker_config::steering_mode::off);
  auto f = edge::parse_config(
      "ports: [{name: wan0, role: wan, device: net_ring0}]\nworkers: {lcores: [0, 1], "
      "snat_steering: flow}\n",
      "test.yaml");
  ASSERT_TRUE(f.has_value()) << f.error().str();
  EXPECT_EQ(f->workers.snat_steering, edge::worker_config::steering_mode::flow);
}
