// `edgectl rules check` and `edgectl waf eval`: the WAF engine run offline over a rules directory
// and captured requests, so operators can try rules before enabling them.
#include "edgectl_waf.hh"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <iostream>
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

bool parse_int(const char* s, int& out) {
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (!*s || *end) return false;
  out = static_cast<int>(v);
  return true;
}

// Parses options shared by both subcommands; positional arguments go to files.
bool parse_opts(int argc, char** argv, int start, common_opts& o) {
  for (int i = start; i < argc; ++i) {
    std::string a = argv[i];
    auto need = [&](const char* what) -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs %s\n", a.c_str(), what);
        return nullptr;
      }
      return argv[++i];
    };
    if (a == "--rules") {
      const char* v = need("a directory");
      if (!v) return false;
      o.rules_dir = v;
    } else if (a == "--cache") {
      const char* v = need("a directory");
      if (!v) return false;
      o.cache_dir = v;
    } else if (a == "--policy") {
      const char* v = need("a file");
      if (!v) return false;
      o.policy_file = v;
    } else if (a == "--jsonl") {
      const char* v = need("a file");
      if (!v) return false;
      o.jsonl = v;
    } else if (a == "--paranoia" || a == "--threshold") {
      const char* v = need("a number");
      if (!v || !parse_int(v, a == "--paranoia" ? o.paranoia : o.threshold)) {
        std::fprintf(stderr, "%s needs a number\n", a.c_str());
        return false;
      }
    } else if (a == "--detect-only") {
      o.detect_only = true;
    } else if (a == "--list-skipped") {
      o.list_skipped = true;
    } else if (a.starts_with("--")) {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return false;
    } else {
      o.files.push_back(a);
    }
  }
  return true;
}

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
    if (data.empty() && v.kind == waf::verdict_kind::pass && !v.request_complete) break;  // clean end
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
    if (data.empty() && v.kind == waf::verdict_kind::need_more) continue;  // finish() reports truncation
  }
  return blocked;
}

}  // namespace

int edgectl_rules_main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[0], "check") != 0) {
    std::fprintf(stderr, "usage: edgectl rules check DIR [--paranoia N] [--list-skipped] [--cache DIR]\n");
    return 2;
  }
  common_opts o;
  if (!parse_opts(argc, argv, 1, o) || o.files.size() != 1) {
    std::fprintf(stderr, "usage: edgectl rules check DIR [--paranoia N] [--list-skipped] [--cache DIR]\n");
    return 2;
  }
  o.rules_dir = o.files[0];
  loaded l;
  if (!load(o, l)) return 1;
  const auto& rs = l.pol->rules();
  const auto& s = rs.stats();
  size_t enabled = 0;
  for (size_t i = 0; i < rs.rules().size(); ++i) enabled += l.pol->enabled(static_cast<uint32_t>(i));
  std::printf("ok: %zu files, %zu rules (%zu from YAML, %zu imported, %zu skipped), %zu enabled at paranoia %d\n",
              l.report.files, rs.rules().size(), l.report.yaml_rules, l.report.imported_rules,
              l.report.skipped.size(), enabled, l.pol->pol().paranoia);
  std::printf("compiled: %zu databases, %zu expressions (%zu prefilter+PCRE2), %zu bytes, stream state %zu bytes/flow, "
              "%.1f ms%s\n",
              s.groups, s.expressions, s.prefiltered, s.database_bytes, s.stream_state_bytes, s.compile_ms,
              s.from_cache ? " (from cache)" : "");
  std::map<std::string, size_t> by_reason;
  for (const auto& k : l.report.skipped) {
    std::string key = k.reason;
    if (key.starts_with("pattern rejected")) key = key.substr(0, key.find(':'));  // message varies per rule
    ++by_reason[key];
  }
  for (const auto& [reason, n] : by_reason) std::printf("skipped %4zu: %s\n", n, reason.c_str());
  if (o.list_skipped)
    for (const auto& k : l.report.skipped) std::printf("skip %s rule %u: %s\n", k.where.c_str(), k.id, k.reason.c_str());
  return 0;
}

int edgectl_waf_main(int argc, char** argv) {
  const char* usage =
      "usage: edgectl waf eval --rules DIR [--paranoia N] [--detect-only] [--threshold N] [--policy FILE]\n"
      "                        [--cache DIR] (FILES... | --jsonl FILE)\n";
  if (argc < 1 || std::strcmp(argv[0], "eval") != 0) {
    std::fputs(usage, stderr);
    return 2;
  }
  common_opts o;
  if (!parse_opts(argc, argv, 1, o) || o.rules_dir.empty() || (o.files.empty() == o.jsonl.empty())) {
    std::fputs(usage, stderr);
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
      if (j.is_discarded() || !j.is_object() || !j.contains("request") || !j["request"].is_string()) {
        std::fprintf(stderr, "error: %s:%d: expected {\"id\": ..., \"request\": \"<base64>\"}\n", o.jsonl.c_str(), n);
        return 1;
      }
      std::string id = j.contains("id") && j["id"].is_string() ? j["id"].get<std::string>() : std::to_string(n);
      eval_one(l, *ws, st, id, b64decode(j["request"].get<std::string>()));
    }
  }
  return 0;
}
