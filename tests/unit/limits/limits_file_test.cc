// Limit files: each tests/unit/limits/bad/*.limits.yaml fails with the message in its first line
// ("# expect: ..."), a full file parses to the specs it says, the shipped limit files load and
// compile, and the WAF rule loader leaves limit files alone.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "limits/set.hh"
#include "rules/limits_file.hh"
#include "rules/loader.hh"

namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

fs::path scratch_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("limits-test-" + std::to_string(::getpid())) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

TEST(LimitFiles, BadFilesFailWithTheirExpectedMessage) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(fs::path(LIMITS_TEST_DATA) / "bad")) {
    if (!rules::is_limits_file(e.path().filename().string())) continue;
    ++n;
    const std::string text = slurp(e.path());
    ASSERT_TRUE(text.starts_with("# expect: ")) << e.path();
    const std::string expect = text.substr(10, text.find('\n') - 10);
    const fs::path dir = scratch_dir(e.path().stem().string());
    fs::copy_file(e.path(), dir / e.path().filename());
    for (const auto& c : fs::directory_iterator(fs::path(LIMITS_TEST_DATA) / "bad"))
      if (c.path().extension() == ".cidr") fs::copy_file(c.path(), dir / c.path().filename());
    auto r = rules::load_limits_dir(dir.string());
    ASSERT_FALSE(r) << e.path() << " loaded";
    std::string got = r.error().str();
    const std::string prefix = dir.string() + "/";
    for (size_t at; (at = got.find(prefix)) != std::string::npos;) got.erase(at, prefix.size());
    EXPECT_EQ(got, expect) << e.path();
  }
  EXPECT_GE(n, 14u);
}

TEST(LimitFiles, FullFileParses) {
  const fs::path dir = scratch_dir("full");
  std::ofstream(dir / "deny.cidr") << "# test\n198.51.100.0/24\n2001:db8:bad::/48\n";
  std::ofstream(dir / "web.limits.yaml") << R"(limits:
  - name: syn-per-source
    services: [web]
    scope: syn
    rate: 50
    burst: 20
  - name: conns-per-24
    scope: concurrent
    key: src_prefix
    prefix: {v4: 24, v6: 64}
    rate: 100
  - name: login
    scope: requests
    match: {method: POST, path_prefix: /login}
    rate: 5
    burst: 5
    mode: detect_only
  - name: api-key
    scope: requests
    key: header
    header: X-Api-Key
    rate: 100
    action: rst
    table_size: 1000000
acl:
  - service: web
    deny: [deny.cidr, 203.0.113.7]
    allow: [10.0.0.0/8]
)";
  auto r = rules::load_limits_dir(dir.string());
  ASSERT_TRUE(r) << r.error().str();
  ASSERT_EQ(r->limits.size(), 4u);
  const auto& syn = r->limits[0];
  EXPECT_EQ(syn.what, limits::scope::syn);
  EXPECT_EQ(syn.act, limits::action::drop);
  EXPECT_EQ(syn.rate, 50u);
  EXPECT_EQ(syn.burst, 20u);
  EXPECT_EQ(syn.services, std::vector<std::string>{"web"});
  EXPECT_EQ(syn.where, (dir / "web.limits.yaml").string() + ":2:5");
  EXPECT_EQ(r->limits[1].key, limits::key_kind::src_prefix);
  EXPECT_EQ(r->limits[1].prefix_v6, 64);
  EXPECT_EQ(r->limits[1].act, limits::action::rst);
  EXPECT_EQ(r->limits[2].method, "POST");
  EXPECT_EQ(r->limits[2].path_prefix, "/login");
  EXPECT_TRUE(r->limits[2].detect_only);
  EXPECT_EQ(r->limits[2].act, limits::action::http_429);
  EXPECT_EQ(r->limits[3].header, "x-api-key");
  EXPECT_EQ(r->limits[3].table_keys, 1000000u);
  ASSERT_EQ(r->acls.size(), 1u);
  const auto& a = r->acls[0];
  ASSERT_EQ(a.lists.size(), 3u);
  EXPECT_EQ(a.lists[0].name, "deny.cidr");
  EXPECT_EQ(a.lists[0].prefixes.size(), 2u);
  EXPECT_EQ(a.lists[1].name, "inline_deny");
  EXPECT_EQ(a.lists[2].name, "inline_allow");
  EXPECT_FALSE(a.lists[2].deny);
  // It compiles, and the WAF loader does not read it as a rule file.
  limits::state_registry reg;
  auto set = limits::limit_set::build(*r, reg);
  ASSERT_TRUE(set) << set.error().str();
  auto rules = rules::load_rules_dir(dir.string());
  ASSERT_TRUE(rules) << rules.error().str();
  EXPECT_TRUE(rules->empty());
}

TEST(LimitFiles, ShippedLoadAndCompile) {
  auto r = rules::load_limits_dir(RULES_SHIPPED_DIR);
  ASSERT_TRUE(r) << r.error().str();
  EXPECT_GE(r->files, 1u);
  EXPECT_GE(r->limits.size(), 1u);
  limits::state_registry reg;
  auto set = limits::limit_set::build(*r, reg);
  ASSERT_TRUE(set) << set.error().str();
}

}  // namespace
