// edge::waf_control on a copy of rules/shipped: initial load, a watched change published within a
// second, a bad change refused with file:line while the old rules keep serving, cached reloads.
#include <gtest/gtest.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>

#include "edge/inspection/waf_control.hh"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

struct publications {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::shared_ptr<const edge::waf_rules_snapshot>> got;

  edge::waf_control::publish_fn fn() {
    return [this](std::shared_ptr<const edge::waf_rules_snapshot> s) {
      std::lock_guard lk(mu);
      got.push_back(std::move(s));
      cv.notify_all();
    };
  }
  bool wait_for(size_t n, std::chrono::milliseconds t) {
    std::unique_lock lk(mu);
    return cv.wait_for(lk, t, [&] { return got.size() >= n; });
  }
  size_t count() {
    std::lock_guard lk(mu);
    return got.size();
  }
};

struct control_fixture : ::testing::Test {
  fs::path root, rules, cache;
  void SetUp() override {
    root = fs::temp_directory_path() /
           ("edge_waf_ctl_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root);
    rules = root / "rules";
    cache = root / "cache";
    fs::create_directories(cache);
    fs::copy(RULES_SHIPPED_DIR, rules, fs::copy_options::recursive);
  }
  void TearDown() override { fs::remove_all(root); }

  edge::waf_control_config config() {
    edge::waf_control_config c;
    c.rules_dir = rules.string();
    c.cache_dir = cache.string();
    edge::waf_service_policy web{.service = "web",
                                 .policy_file = {},
                                 .node = YAML::Load("mode: enforce\nparanoia: 1\n"),
                                 .where = "edge.yaml"};
    edge::waf_service_policy api{.service = "api",
                                 .policy_file = {},
                                 .node = YAML::Load("rule_sets: [sqli]\nmode: detect_only\n"),
                                 .where = "edge.yaml"};
    c.services = {web, api};
    return c;
  }
  // Written as editors and `kubectl cp` do: a new file renamed into place.
  void write_atomically(const std::string& name, const std::string& text) {
    auto tmp = rules / (".tmp-" + name);
    std::ofstream(tmp) << text;
    fs::rename(tmp, rules / name);
  }
};

const char* extra_rule = R"(set: custom
rules:
  - id: 100900
    message: "custom: forbidden token"
    phase: args
    operator: contains
    pattern: "forbidden-token"
    action: block
)";

TEST_F(control_fixture, initial_load_of_shipped_rules_binds_every_service) {
  publications pub;
  auto c = edge::waf_control::create(config(), pub.fn());
  ASSERT_TRUE(c.has_value()) << c.error().str();
  ASSERT_EQ(pub.count(), 1u);
  auto s = pub.got[0];
  EXPECT_EQ(s->generation, 1u);
  EXPECT_GE(s->rules->rules().size(), 20u);
  ASSERT_TRUE(s->policy_for("web"));
  ASSERT_TRUE(s->policy_for("api"));
  EXPECT_FALSE(s->policy_for("nope"));
  EXPECT_TRUE(s->policy_for("api")->pol().detect_only);
  EXPECT_EQ(&s->policy_for("web")->rules(), s->rules.get())
      << "policies are bound to the published set";
  auto m = (*c)->metrics();
  EXPECT_EQ(m.reloads_ok, 1u);
  EXPECT_EQ(m.reloads_failed, 0u);
  EXPECT_EQ(m.rules, s->rules->rules().size());
  EXPECT_GT(m.last_compile_ms, 0.0);
  EXPECT_TRUE(m.last_error.empty());
}

TEST_F(control_fixture, bad_rules_or_policy_at_start_are_errors_with_location) {
  std::ofstream(rules / "zz-bad.yaml")
      << "rules:\n  - id: 100901\n    phase: args\n    pattern: \"(unclosed\"\n";
  publications pub;
  auto c = edge::waf_control::create(config(), pub.fn());
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().str().find("zz-bad.yaml:"), std::string::npos) << c.error().str();
  EXPECT_NE(c.error().str().find("100901"), std::string::npos) << c.error().str();
  EXPECT_EQ(pub.count(), 0u);
  fs::remove(rules / "zz-bad.yaml");

  auto cfg = config();
  cfg.services[0].node = YAML::Load("rule_sets: [no_such_set]\n");
  auto c2 = edge::waf_control::create(cfg, pub.fn());
  ASSERT_FALSE(c2.has_value());
  EXPECT_NE(c2.error().str().find("web"), std::string::npos) << c2.error().str();
}

TEST_F(control_fixture, good_change_is_published_within_a_second_bad_change_keeps_the_old_set) {
  publications pub;
  auto c = edge::waf_control::create(config(), pub.fn());
  ASSERT_TRUE(c.has_value()) << c.error().str();
  ASSERT_TRUE((*c)->start_watching().has_value());
  size_t before = pub.got[0]->rules->rules().size();

  auto t0 = std::chrono::steady_clock::now();
  write_atomically("custom.yaml", extra_rule);
  ASSERT_TRUE(pub.wait_for(2, 1000ms)) << "no publish within a second";
  auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(waited, 1000ms);
  auto s2 = (*c)->current();
  EXPECT_EQ(s2->generation, 2u);
  EXPECT_EQ(s2->rules->rules().size(), before + 1);
  EXPECT_GE(s2->rules->find(100900), 0);
  EXPECT_FALSE(s2->same_rules);

  // A broken edit: the error names the file and line; generation 2 keeps serving, nothing
  // published.
  write_atomically("custom.yaml", std::string(extra_rule) +
                                      "  - id: 100901\n    phase: args\n    pattern: \"(x\"\n");
  auto deadline = std::chrono::steady_clock::now() + 1000ms;
  while ((*c)->metrics().reloads_failed == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  auto m = (*c)->metrics();
  ASSERT_EQ(m.reloads_failed, 1u);
  EXPECT_NE(m.last_error.find("custom.yaml:9:"), std::string::npos) << m.last_error;
  EXPECT_NE(m.last_error.find("100901"), std::string::npos) << m.last_error;
  EXPECT_EQ(pub.count(), 2u);
  EXPECT_EQ((*c)->current(), s2);
  EXPECT_EQ(m.generation, 2u);

  // Fixing it publishes again; removing the file too.
  fs::remove(rules / "custom.yaml");
  ASSERT_TRUE(pub.wait_for(3, 1000ms));
  EXPECT_EQ((*c)->current()->rules->rules().size(), before);
  EXPECT_TRUE((*c)->metrics().last_error.empty());
  (*c)->stop();
}

TEST_F(control_fixture, a_burst_of_changes_is_debounced_into_one_reload) {
  publications pub;
  auto c = edge::waf_control::create(config(), pub.fn());
  ASSERT_TRUE(c.has_value());
  ASSERT_TRUE((*c)->start_watching().has_value());
  for (int i = 0; i < 5; ++i) {
    write_atomically("custom.yaml", extra_rule);
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_TRUE(pub.wait_for(2, 1500ms));
  std::this_thread::sleep_for(400ms);
  // One reload expected; a loaded machine may stretch a 20 ms pause past the debounce once.
  EXPECT_LE(pub.count(), 3u) << "five writes in a burst must not mean five reloads";
  EXPECT_GE((*c)->metrics().watch_events, 5u);
}

TEST_F(control_fixture, unchanged_reload_hits_the_cache_and_is_fast) {
  publications pub;
  auto c = edge::waf_control::create(config(), pub.fn());
  ASSERT_TRUE(c.has_value());
  auto first = (*c)->metrics();
  auto g = (*c)->reload();
  ASSERT_TRUE(g.has_value()) << g.error().str();
  auto m = (*c)->metrics();
  EXPECT_TRUE(m.last_from_cache);
  EXPECT_TRUE(pub.got.back()->same_rules);
  EXPECT_EQ(pub.got.back()->generation, 2u);
  EXPECT_FALSE(first.last_from_cache);
  EXPECT_LT(m.last_compile_ms, first.last_compile_ms) << "a cached load must beat a full compile";
  std::printf(
      "[ figures ] shipped rules: first load %.1f ms (from_cache=%d), cached reload %.1f ms\n",
      first.last_compile_ms, first.last_from_cache, m.last_compile_ms);
}

// A damaged cache entry is not trusted: it is counted, logged, recompiled and rewritten.
TEST_F(control_fixture, damaged_cache_entry_is_counted_and_rebuilt) {
  publications pub;
  auto c = edge::waf_control::create(config(), pub.fn());
  ASSERT_TRUE(c.has_value());
  size_t damaged = 0;
  for (const auto& f : fs::directory_iterator(cache)) {
    std::string s;
    {
      std::ifstream in(f.path(), std::ios::binary);
      s.assign(std::istreambuf_iterator<char>(in), {});
    }
    ASSERT_GT(s.size(), 200u);
    s[s.size() - 100] ^= 1;
    std::ofstream(f.path(), std::ios::binary | std::ios::trunc) << s;
    ++damaged;
  }
  ASSERT_EQ(damaged, 1u);
  ASSERT_TRUE((*c)->reload().has_value());
  auto m = (*c)->metrics();
  EXPECT_EQ(m.cache_rejected, 1u);
  EXPECT_FALSE(m.last_from_cache);
  ASSERT_TRUE((*c)->reload().has_value());
  m = (*c)->metrics();
  EXPECT_EQ(m.cache_rejected, 1u);
  EXPECT_TRUE(m.last_from_cache);
}

TEST_F(control_fixture, a_change_before_start_watching_is_not_missed) {
  publications pub;
  auto c = edge::waf_control::create(config(), pub.fn());
  ASSERT_TRUE(c.has_value());
  write_atomically("custom.yaml", extra_rule);
  std::this_thread::sleep_for(50ms);
  ASSERT_TRUE((*c)->start_watching().has_value());
  ASSERT_TRUE(pub.wait_for(2, 1500ms));
  EXPECT_GE((*c)->current()->rules->find(100900), 0);
}

TEST_F(control_fixture, missing_rules_dir_is_an_error) {
  auto cfg = config();
  cfg.rules_dir = (root / "nope").string();
  publications pub;
  auto c = edge::waf_control::create(cfg, pub.fn());
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().str().find("nope"), std::string::npos) << c.error().str();
}

TEST_F(control_fixture, policy_files_are_reread_on_reload_and_bad_ones_keep_the_old_set) {
  auto pf = root / "web-policy.yaml";
  std::ofstream(pf) << "mode: enforce\nanomaly_threshold: 5\n";
  auto cfg = config();
  cfg.services[0] = {.service = "web", .policy_file = pf.string(), .node = {}, .where = {}};
  publications pub;
  auto c = edge::waf_control::create(cfg, pub.fn());
  ASSERT_TRUE(c.has_value()) << c.error().str();
  EXPECT_FALSE((*c)->current()->policy_for("web")->pol().detect_only);
  std::ofstream(pf) << "mode: detect_only\n";
  ASSERT_TRUE((*c)->reload().has_value());
  EXPECT_TRUE((*c)->current()->policy_for("web")->pol().detect_only);
  std::ofstream(pf) << "mode: enforce\nbogus_key: 1\n";
  auto r = (*c)->reload();
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().str().find("web-policy.yaml:2"), std::string::npos) << r.error().str();
  EXPECT_TRUE((*c)->current()->policy_for("web")->pol().detect_only) << "old set keeps serving";
  EXPECT_EQ((*c)->metrics().reloads_failed, 1u);
}

// A rules directory replaced as a whole (moved away, a new one moved into place) is picked up: the
// watch follows the path, not the old inode.
TEST_F(control_fixture, replaced_directory_is_watched_again_and_reloaded) {
  publications pub;
  auto c = edge::waf_control::create(config(), pub.fn());
  ASSERT_TRUE(c.has_value());
  ASSERT_TRUE((*c)->start_watching().has_value());
  auto staged = root / "staged";
  fs::copy(rules, staged, fs::copy_options::recursive);
  std::ofstream(staged / "custom.yaml") << extra_rule;
  fs::rename(rules, root / "old");
  fs::rename(staged, rules);
  ASSERT_TRUE(pub.wait_for(2, 2000ms)) << "replaced directory not reloaded";
  EXPECT_GE((*c)->current()->rules->find(100900), 0);
  // And the new directory is watched too.
  fs::remove(rules / "custom.yaml");
  ASSERT_TRUE(pub.wait_for(3, 2000ms));
  EXPECT_LT((*c)->current()->rules->find(100900), 0);
}

}  // namespace
