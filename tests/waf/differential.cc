// Differential harness: edge's engine with the imported OWASP CRS against libmodsecurity3 with the
// same CRS files, in one process, on a fixed corpus (corpus.txt, written by make_corpus.py). Both
// run at paranoia 4 in detect-only mode; per request the ids of the CRS detection rules that
// matched (911000-944999) are compared. Every disagreement is listed with its cause: a rule the
// importer skipped (with the importer's reason), an imported rule with an approximation (the
// importer's note), edge's per-request audit limit, or an engine difference. Prints the agreement
// figure (requests with the same rule ids on both sides) and fails below --floor (percent).
//
//   waf_differential [--corpus FILE] [--crs DIR] [--setup FILE] [--floor PCT] [--quiet]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "modsec_engine.hh"
#include "rules/secrule.hh"
#include "waf/inspector.hh"

namespace fs = std::filesystem;

namespace {

bool detection_rule(unsigned id) {
  return id >= 911000 && id < 945000;
}

std::string unescape(const std::string& s) {
  std::string o;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 >= s.size()) {
      o.push_back(s[i]);
      continue;
    }
    char c = s[++i];
    if (c == 'r')
      o.push_back('\r');
    else if (c == 'n')
      o.push_back('\n');
    else if (c == 't')
      o.push_back('\t');
    else if (c == 'x' && i + 2 < s.size()) {
      o.push_back(static_cast<char>(std::strtoul(s.substr(i + 1, 2).c_str(), nullptr, 16)));
      i += 2;
    } else {
      o.push_back(c);
    }
  }
  return o;
}

struct item {
  std::string family, bytes;
};

std::vector<item> read_corpus(const std::string& path) {
  std::vector<item> out;
  std::ifstream in(path);
  for (std::string l; std::getline(in, l);) {
    if (l.empty() || l[0] == '#') continue;
    size_t tab = l.find('\t');
    if (tab == std::string::npos) continue;
    out.push_back({l.substr(0, tab), unescape(l.substr(tab + 1))});
  }
  return out;
}

struct edge_side {
  std::shared_ptr<const waf::bound_policy> pol;
  std::unique_ptr<waf::worker_scratch> ws;
  waf::worker_stats st;
  // Rule ids matched (every rule that fired); *truncated: the audit list was full (the ids are
  // still complete: counted to show how often a request fires more than max_matches rules).
  std::set<unsigned> eval(const std::string& req, bool& truncated, bool& parse_error) {
    std::set<unsigned> ids;
    auto in = std::move(*waf::inspector::create(pol, *ws));
    std::span<const char> d(req.data(), req.size());
    waf::verdict v;
    while (!d.empty()) {
      v = in->feed(*ws, st, d);
      if (v.kind == waf::verdict_kind::block || v.request_complete) break;
      d = d.subspan(v.consumed);
    }
    parse_error = v.kind == waf::verdict_kind::block && v.status != 403;
    // All rules that fired, not only the audit list's first max_matches.
    in->for_each_fired([&](const waf::rule& r) {
      if (detection_rule(r.id)) ids.insert(r.id);
    });
    truncated = in->matches_dropped() > 0;
    return ids;
  }
};

struct modsec_side {
  waf_bench::modsec_engine engine;
  bool load(const std::string& setup, const std::vector<std::string>& files) {
    const std::string base =
        std::string(
            "SecRuleEngine DetectionOnly\nSecRequestBodyAccess On\n"
            "SecRequestBodyLimit 13107200\nSecRequestBodyNoFilesLimit 1048576\n"
            "SecRequestBodyLimitAction ProcessPartial\nSecResponseBodyAccess Off\n"
            "SecAuditEngine Off\n"
            "SecAction \"id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level=4\"\n") +
        waf_bench::modsec_json_body_rule;
    return engine.load(base, setup, files);
  }
  // The ids of the detection rules that matched; none when edge's parser refuses the head.
  std::set<unsigned> eval(const std::string& req) {
    std::set<unsigned> ids;
    unsigned buf[256];
    size_t n = 0;
    if (engine.eval(req, buf, 256, &n) < 0) return ids;
    for (size_t i = 0; i < std::min<size_t>(n, 256); ++i)
      if (detection_rule(buf[i])) ids.insert(buf[i]);
    return ids;
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::string corpus_path = "corpus.txt", crs = "/usr/share/modsecurity-crs/rules",
              setup = "/etc/modsecurity/crs/crs-setup.conf";
  double floor = 0;
  bool quiet = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quiet") {
      quiet = true;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "option %s needs a value\n", a.c_str());
      return 2;
    }
    if (a == "--corpus")
      corpus_path = argv[++i];
    else if (a == "--crs")
      crs = argv[++i];
    else if (a == "--setup")
      setup = argv[++i];
    else if (a == "--floor")
      floor = std::strtod(argv[++i], nullptr);
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  auto corpus = read_corpus(corpus_path);
  if (corpus.empty()) {
    std::fprintf(stderr, "empty or unreadable corpus %s\n", corpus_path.c_str());
    return 1;
  }
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(crs))
    if (e.path().extension() == ".conf") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  // Both sides read the same setup: edge decides conditions on its configuration TX variables at
  // import (crs-setup's limits and switches), ModSecurity at run time.
  std::vector<std::string> edge_files = files;
  if (fs::exists(setup)) edge_files.insert(edge_files.begin(), setup);
  auto imp = rules::import_secrules(edge_files);
  if (!imp) {
    std::fprintf(stderr, "import: %s\n", imp.error().str().c_str());
    return 1;
  }
  std::map<unsigned, std::string> skipped, notes;
  for (const auto& s : imp->skipped) skipped[s.id] = s.reason;
  for (const auto& n : imp->notes) {
    unsigned id = static_cast<unsigned>(std::strtoul(n.c_str(), nullptr, 10));
    auto& t = notes[id];
    t += (t.empty() ? "" : "; ") + n.substr(n.find(": ") + 2);
  }
  auto rs = waf::ruleset::compile(std::move(imp->rules));
  if (!rs) {
    std::fprintf(stderr, "compile: %s\n", rs.error().str().c_str());
    return 1;
  }
  waf::policy p;
  p.paranoia = 4;
  p.detect_only = true;
  p.anomaly_threshold = 100000;
  p.body_limit = 1048576;
  edge_side ed;
  ed.pol = *waf::bound_policy::bind(*rs, p);
  ed.ws = std::make_unique<waf::worker_scratch>(std::move(*waf::worker_scratch::create(**rs)));
  modsec_side ms;
  if (!ms.load(setup, files)) return 1;

  size_t agree = 0, truncated_n = 0, edge_hits = 0, ms_hits = 0, both_hits = 0;
  std::map<std::string, std::pair<size_t, size_t>> fam;  // family -> agree, total
  std::map<std::string, size_t> causes;                  // "id: cause" -> requests
  for (size_t i = 0; i < corpus.size(); ++i) {
    const auto& it = corpus[i];
    bool trunc = false, perr = false;
    auto a = ed.eval(it.bytes, trunc, perr);
    truncated_n += trunc;
    auto b = ms.eval(it.bytes);
    edge_hits += a.size();
    ms_hits += b.size();
    for (unsigned id : a) both_hits += b.count(id);
    std::string family = it.family.substr(0, it.family.find("-mut-"));
    fam[family].second++;
    if (a == b) {
      ++agree;
      fam[family].first++;
      continue;
    }
    std::string line = it.bytes.substr(0, std::min<size_t>(it.bytes.find("\r\n"), 110));
    if (!quiet)
      std::printf("disagreement #%zu [%s] %s%s\n", i + 1, it.family.c_str(), line.c_str(),
                  perr ? " (edge: parse error)" : "");
    for (unsigned id : b) {
      if (a.count(id)) continue;
      std::string cause = skipped.count(id)         ? "skipped by the importer: " + skipped[id]
                          : notes.count(id)         ? "approximated on import: " + notes[id]
                          : rs->get()->find(id) < 0 ? "not imported"
                                                    : "engine difference: edge did not match";
      if (perr) cause = "edge refused the request (parse error)";
      ++causes[std::to_string(id) + " modsecurity only: " + cause];
      if (!quiet) std::printf("    modsecurity only %u: %s\n", id, cause.c_str());
    }
    for (unsigned id : a) {
      if (b.count(id)) continue;
      std::string cause = notes.count(id) ? "approximated on import: " + notes[id]
                                          : "engine difference: edge matched, modsecurity did not";
      ++causes[std::to_string(id) + " edge only: " + cause];
      if (!quiet) std::printf("    edge only %u: %s\n", id, cause.c_str());
    }
  }
  std::printf("\ndisagreements by rule and cause (requests):\n");
  std::vector<std::pair<size_t, std::string>> sorted;
  for (const auto& [k, v] : causes) sorted.emplace_back(v, k);
  std::sort(sorted.rbegin(), sorted.rend());
  for (const auto& [v, k] : sorted) std::printf("  %4zu  %s\n", v, k.c_str());
  std::printf("\nper family (same rule ids / requests):\n");
  for (const auto& [f, v] : fam) std::printf("  %-16s %4zu/%-4zu\n", f.c_str(), v.first, v.second);
  double pct = 100.0 * agree / corpus.size();
  std::printf(
      "\nrule-id agreement with libmodsecurity3 (CRS, paranoia 4): %.1f%% of requests (%zu/%zu); "
      "rule matches: edge %zu, modsecurity %zu, both %zu; requests over edge's audit list (%zu "
      "rules): %zu\n",
      pct, agree, corpus.size(), edge_hits, ms_hits, both_hits, waf::inspector::max_matches,
      truncated_n);
  if (pct + 1e-9 < floor) {
    std::printf("FAIL: agreement %.1f%% is below the floor %.1f%%\n", pct, floor);
    return 1;
  }
  return 0;
}
