// The compiled-database cache: entries are bound to the rules' content hash, the Hyperscan version
// and the platform, checksummed, and written 0600 through mkstemp + rename. An entry that does not
// verify is ignored (with the reason), the rules are compiled again and the entry is rewritten.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "engine_fixture.hh"

namespace fs = std::filesystem;

namespace {

struct tmp_dir {
  fs::path p;
  explicit tmp_dir(const char* tag) {
    p = fs::temp_directory_path() /
        (std::string("waf-cache-") + tag + "-" + std::to_string(::getpid()));
    fs::remove_all(p);
  }
  ~tmp_dir() { fs::remove_all(p); }
};

std::string rules_with(const char* pattern) {
  return std::string("rules:\n  - id: 1\n    action: block\n    phase: args\n    pattern: ") +
         pattern + "\n  - id: 2\n    action: block\n    phase: args\n    pattern: \"x(?!y)\"\n";
}

std::shared_ptr<const waf::ruleset> compile(const std::string& yaml, const fs::path& cache) {
  auto rs = rules::parse_rule_file(yaml, "c.yaml");
  EXPECT_TRUE(rs);
  if (!rs) return nullptr;
  waf::compile_options o;
  o.cache_dir = cache.string();
  auto c = waf::ruleset::compile(std::move(*rs), o);
  EXPECT_TRUE(c) << (c ? "" : c.error().str());
  return c ? *c : nullptr;
}

fs::path entry_of(const waf::ruleset& rs, const fs::path& dir) {
  char name[64];
  std::snprintf(name, sizeof name, "waf-%016llx.hsdb", static_cast<unsigned long long>(rs.hash()));
  return dir / name;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void spill(const fs::path& p, const std::string& data) {
  fs::remove(p);
  std::ofstream(p, std::ios::binary) << data;
  fs::permissions(p, fs::perms::owner_read | fs::perms::owner_write);
}

// What a request with ?q=<value> gets from a ruleset.
waf::verdict_kind verdict(std::shared_ptr<const waf::ruleset> rs, const std::string& value) {
  auto b = waf::bound_policy::bind(std::move(rs), {});
  EXPECT_TRUE(b);
  auto ws = waf::worker_scratch::create((*b)->rules());
  EXPECT_TRUE(ws);
  waf::worker_stats st;
  auto in = waf::inspector::create(*b, *ws);
  std::string req = "GET /?q=" + value + " HTTP/1.1\r\nHost: t\r\n\r\n";
  return (*in)->feed(*ws, st, req).kind;
}

TEST(cache, entry_is_private_and_reused) {
  tmp_dir d("reuse");
  auto a = compile(rules_with("aaa"), d.p);
  ASSERT_TRUE(a);
  EXPECT_FALSE(a->stats().from_cache);
  EXPECT_EQ(a->stats().cache_error, "");
  fs::path e = entry_of(*a, d.p);
  struct stat sb {};
  ASSERT_EQ(::stat(e.c_str(), &sb), 0) << e;
  EXPECT_EQ(sb.st_mode & 0777, 0600u);
  size_t files = 0;
  for (const auto& f : fs::directory_iterator(d.p)) files += f.is_regular_file() ? 1 : 0;
  EXPECT_EQ(files, 1u) << "no temporary file left behind";
  auto again = compile(rules_with("aaa"), d.p);
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->stats().from_cache);
  EXPECT_EQ(again->stats().cache_rejected, "");
  EXPECT_EQ(verdict(again, "aaa"), waf::verdict_kind::block);
  EXPECT_EQ(verdict(again, "xz"), waf::verdict_kind::block);  // prefilter flag restored
  EXPECT_EQ(verdict(again, "xy"), waf::verdict_kind::pass);
}

// Before: an entry was trusted on its magic number and entry count, so one file (planted, or left
// from other rules) under the name of another rule set made that set match the wrong patterns.
TEST(cache, entry_of_other_rules_is_rejected_and_recompiled) {
  tmp_dir d("swap");
  auto a = compile(rules_with("aaa"), d.p);
  auto b = compile(rules_with("bbb"), d.p);
  ASSERT_TRUE(a && b);
  ASSERT_NE(a->hash(), b->hash());
  spill(entry_of(*b, d.p), slurp(entry_of(*a, d.p)));
  auto b2 = compile(rules_with("bbb"), d.p);
  ASSERT_TRUE(b2);
  EXPECT_FALSE(b2->stats().from_cache);
  EXPECT_NE(b2->stats().cache_rejected.find("content hash mismatch"), std::string::npos)
      << b2->stats().cache_rejected;
  EXPECT_EQ(verdict(b2, "bbb"), waf::verdict_kind::block);
  EXPECT_EQ(verdict(b2, "aaa"), waf::verdict_kind::pass);
  auto b3 = compile(rules_with("bbb"), d.p);  // the entry was rewritten
  ASSERT_TRUE(b3);
  EXPECT_TRUE(b3->stats().from_cache);
}

struct corruption {
  const char* name;
  std::function<void(const fs::path&)> apply;
  const char* why;
};

TEST(cache, damaged_entries_are_rejected_with_their_reason) {
  const corruption cases[] = {
      {"truncated", [](const fs::path& p) { spill(p, slurp(p).substr(0, 40)); }, "truncated"},
      {"cut_short",
       [](const fs::path& p) {
         std::string s = slurp(p);
         spill(p, s.substr(0, s.size() - 100));
       },
       "checksum mismatch"},
      {"bit_flip",
       [](const fs::path& p) {
         std::string s = slurp(p);
         s[s.size() / 2] ^= 0x10;
         spill(p, s);
       },
       "checksum mismatch"},
      {"bad_magic",
       [](const fs::path& p) {
         std::string s = slurp(p);
         s[0] = 'X';
         spill(p, s);
       },
       "bad magic"},
      {"old_format", [](const fs::path& p) { spill(p, "EDGEWAF1" + std::string(4096, '\0')); },
       "bad magic"},
      {"group_writable",
       [](const fs::path& p) { fs::permissions(p, fs::perms::group_write, fs::perm_options::add); },
       "writable by group or others"},
      {"symlink",
       [](const fs::path& p) {
         fs::path target = p;
         target += ".real";
         fs::rename(p, target);
         fs::create_symlink(target, p);
       },
       "cannot open"},
  };
  for (const auto& c : cases) {
    tmp_dir d(c.name);
    auto first = compile(rules_with("aaa"), d.p);
    ASSERT_TRUE(first);
    c.apply(entry_of(*first, d.p));
    auto rs = compile(rules_with("aaa"), d.p);
    ASSERT_TRUE(rs) << c.name;
    EXPECT_FALSE(rs->stats().from_cache) << c.name;
    EXPECT_NE(rs->stats().cache_rejected.find(c.why), std::string::npos)
        << c.name << ": " << rs->stats().cache_rejected;
    EXPECT_EQ(verdict(rs, "aaa"), waf::verdict_kind::block) << c.name;
    auto again = compile(rules_with("aaa"), d.p);
    ASSERT_TRUE(again);
    EXPECT_TRUE(again->stats().from_cache) << c.name << ": rewritten after the rejection";
  }
}

}  // namespace
