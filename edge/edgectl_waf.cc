// `edgectl rules check` and `edgectl waf eval`: the WAF engine run offline over a rules directory
// and captured requests, so operators can try rules before enabling them.
#include "edgectl_waf.hh"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "rules/loader.hh"
#include "rules/secrule.hh"
#include "waf/inspector.hh"

namespace {

struct common_opts {
  std::string rules_dir, cache_dir, policy_file, jsonl;
  int paranoia = 0;
  int threshold = 0;
  bool detect_only = false, list_skipped = false;
  std::vector<std::string> files;
};

struct loaded {
  std::shared_ptr<const waf::bound_policy> pol;
  rules::load_report report;
};

bool load(const common_opts& o, loaded& out) {
  auto rs = rules::load_rules_dir(o.rules_dir, &out.report);
  if (!rs) {
    std::fprintf(stderr, "error: %s\n", rs.error().str().c_str());
    return false;
  }
  waf::compile_options co;
  co.cache_dir = o.cache_dir;
  auto compiled = waf::ruleset::compile(std::move(*rs), co);
  if (!compiled) {
    std::fprintf(stderr, "error: %s\n", compiled.error().str().c_str());
    return false;
  }
  waf::policy p;
  if (!o.policy_file.empty()) {
    auto lp = rules::load_policy_file(o.policy_file);
    if (!lp) {
      std::fprintf(stderr, "error: %s\n", lp.error().str().c_str());
      return false;
    }
    p = std::move(*lp);
  }
  if (o.paranoia) p.paranoia = o.paranoia;
  if (o.threshold) p.anomaly_threshold = o.threshold;
  if (o.detect_only) p.detect_only = true;
  auto b = waf::bound_policy::bind(*compiled, std::move(p));
  if (!b) {
    std::fprintf(stderr, "error: %s\n", b.error().str().c_str());
    return false;
  }
  out.pol = *b;
  return true;
}

std::string b64decode(std::string_view s) {
  std::string out;
  unsigned acc = 0;
  int bits = 0;
  for (unsigned char c : s) {
    int v = c >= 'A' && c <= 'Z'   ? c - 'A'
            : c >= 'a' && c <= 'z' ? c - 'a' + 26
            : c >= '0' && c <= '9' ? c - '0' + 52
            : c == '+' || c == '-' ? 62
            : c == '/' || c == '_' ? 63
                                   : -1;
    if (v < 0) continue;
    acc = (acc << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

// Runs one connection's bytes through a fresh inspector; prints a JSON line per request.
// Returns the number of blocked requests.
int eval_one(const loaded& l, waf::worker_scratch& ws, waf::worker_stats& st, const std::string& id,
             const std::string& bytes) {
  auto in = waf::inspector::create(l.pol, ws);
  if (!in) {
    std::fprintf(stderr, "error: %s\n", in.error().str().c_str());
    return 1;
  }
  std::span<const char> data(bytes.data(), bytes.size());
  int blocked = 0, n = 0;
  while (true) {
    waf::verdict v = data.empty() ? (*in)->finish(ws, st) : (*in)->feed(ws, st, data);
    if (data.empty() && v.kind == waf::verdict_kind::pass && !v.request_complete)
      break;  // clean end
    data = data.subspan(v.consumed);
    if (v.kind == waf::verdict_kind::block || v.request_complete) {
      std::string rid = n == 0 ? id : id + "#" + std::to_string(n);
      std::cout << waf::audit_json(**in, v, rid) << "\n";
      ++n;
      if (v.kind == waf::verdict_kind::block) {
        ++blocked;
        break;
      }
    }
    if (data.empty() && v.kind == waf::verdict_kind::need_more)
      continue;  // finish() reports truncation
  }
  return blocked;
}

common_opts g_opts;

int rules_check() {
  common_opts& o = g_opts;
  o.rules_dir = o.files.empty() ? std::string() : o.files[0];
  loaded l;
  if (!load(o, l)) return 1;
  const auto& rs = l.pol->rules();
  const auto& s = rs.stats();
  size_t enabled = 0;
  for (size_t i = 0; i < rs.rules().size(); ++i)
    enabled += l.pol->enabled(static_cast<uint32_t>(i));
  std::printf(
      "ok: %zu files, %zu rules (%zu from YAML, %zu imported, %zu skipped), %zu enabled at "
      "paranoia %d\n",
      l.report.files, rs.rules().size(), l.report.yaml_rules, l.report.imported_rules,
      l.report.skipped.size(), enabled, l.pol->pol().paranoia);
  std::printf(
      "compiled: %zu databases, %zu expressions (%zu prefilter+PCRE2), %zu bytes, stream state %zu "
      "bytes/flow, "
      "%.1f ms%s\n",
      s.groups, s.expressions, s.prefiltered, s.database_bytes, s.stream_state_bytes, s.compile_ms,
      s.from_cache ? " (from cache)" : "");
  std::map<std::string, size_t> by_reason;
  for (const auto& k : l.report.skipped) {
    std::string key = k.reason;
    if (key.starts_with("pattern rejected"))
      key = key.substr(0, key.find(':'));  // message varies per rule
    ++by_reason[key];
  }
  for (const auto& [reason, n] : by_reason) std::printf("skipped %4zu: %s\n", n, reason.c_str());
  if (o.list_skipped)
    for (const auto& k : l.report.skipped)
      std::printf("skip %s rule %u: %s\n", k.where.c_str(), k.id, k.reason.c_str());
  return 0;
}

int waf_eval() {
  common_opts& o = g_opts;
  if (o.files.empty() == o.jsonl.empty()) {
    std::fputs(
        "edgectl waf eval: give request FILES or --jsonl FILE (one of them); see edgectl waf eval "
        "--help\n",
        stderr);
    return 2;
  }
  loaded l;
  if (!load(o, l)) return 1;
  auto ws = waf::worker_scratch::create(l.pol->rules());
  if (!ws) {
    std::fprintf(stderr, "error: %s\n", ws.error().str().c_str());
    return 1;
  }
  waf::worker_stats st;
  for (const auto& f : o.files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "error: cannot open %s\n", f.c_str());
      return 1;
    }
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    eval_one(l, *ws, st, f, bytes);
  }
  if (!o.jsonl.empty()) {
    std::ifstream in(o.jsonl);
    if (!in) {
      std::fprintf(stderr, "error: cannot open %s\n", o.jsonl.c_str());
      return 1;
    }
    std::string line;
    int n = 0;
    while (std::getline(in, line)) {
      ++n;
      if (line.empty()) continue;
      nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object() || !j.contains("request") ||
          !j["request"].is_string()) {
        std::fprintf(stderr, "error: %s:%d: expected {\"id\": ..., \"request\": \"<base64>\"}\n",
                     o.jsonl.c_str(), n);
        return 1;
      }
      std::string id =
          j.contains("id") && j["id"].is_string() ? j["id"].get<std::string>() : std::to_string(n);
      eval_one(l, *ws, st, id, b64decode(j["request"].get<std::string>()));
    }
  }
  return 0;
}

}  // namespace

std::function<int()> edgectl_waf_subcommands(CLI::App& app) {
  common_opts& o = g_opts;
  o = common_opts{};
  auto* rules = app.add_subcommand("rules", "offline rules tools (no edged needed)");
  rules->require_subcommand(1);
  auto* check = rules->add_subcommand(
      "check", "load and compile a rules directory, report rules, skips and databases");
  check->add_option("DIR", o.files, "rules directory")->required()->expected(1);
  check->add_option("--paranoia", o.paranoia,
                    "paranoia level the enabled count is given for (1..4)");
  check->add_flag("--list-skipped", o.list_skipped,
                  "list every skipped rule with its location and reason");
  check->add_option("--cache", o.cache_dir, "compiled-database cache directory");
  auto* waf = app.add_subcommand("waf", "run the WAF offline (no edged needed)");
  waf->require_subcommand(1);
  auto* eval = waf->add_subcommand(
      "eval", "run requests through the rules; one JSON audit line per request");
  eval->add_option("--rules", o.rules_dir, "rules directory")->required();
  eval->add_option("--paranoia", o.paranoia, "paranoia level (1..4)");
  eval->add_flag("--detect-only", o.detect_only, "report, never block");
  eval->add_option("--threshold", o.threshold, "anomaly score threshold");
  eval->add_option("--policy", o.policy_file, "a policy file");
  eval->add_option("--cache", o.cache_dir, "compiled-database cache directory");
  eval->add_option("--jsonl", o.jsonl,
                   "requests as JSON lines {\"id\": ..., \"request\": \"<base64>\"}");
  eval->add_option("FILES", o.files, "files, each one connection's raw request bytes");
  return [check, eval]() -> int {
    if (check->parsed()) return rules_check();
    if (eval->parsed()) return waf_eval();
    return -1;
  };
}

namespace {

// `edgectl TOP argv...` through the same CLI11 parser: usage errors exit 2, --help 0.
int run_subcommand(const char* top, int argc, char** argv) {
  CLI::App app{"edgectl"};
  const auto run = edgectl_waf_subcommands(app);
  std::vector<std::string> args;  // CLI11 takes them last first
  for (int i = argc; i-- > 0;) args.emplace_back(argv[i]);
  args.emplace_back(top);
  try {
    app.parse(args);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }
  return run();
}

}  // namespace

int edgectl_rules_main(int argc, char** argv) {
  return run_subcommand("rules", argc, argv);
}
int edgectl_waf_main(int argc, char** argv) {
  return run_subcommand("waf", argc, argv);
}
