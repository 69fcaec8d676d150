// WAF bench: the edge engine with the imported OWASP CRS (paranoia 1) against libmodsecurity3
// running the same CRS in-process, on one generated corpus, in one run. Reports requests/s and
// MB/s per core for both, their ratio, verdict agreement, and compile / reload-from-cache times.
//
//   waf_bench [--crs DIR] [--setup FILE] [--requests N] [--attack-share F] [--seconds S]
//             [--edge-only 1]   (edge alone, for a profiler: no ModSecurity, no verdict pass)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "corpus.hh"
#include "modsec_engine.hh"
#include "rules/secrule.hh"
#include "waf/inspector.hh"

namespace fs = std::filesystem;
using clk = std::chrono::steady_clock;

namespace {

double ms_since(clk::time_point t) {
  return std::chrono::duration<double, std::milli>(clk::now() - t).count();
}

std::vector<std::string> conf_files(const std::string& dir) {
  std::vector<std::string> f;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".conf") f.push_back(e.path().string());
  std::sort(f.begin(), f.end());
  return f;
}

// --- edge engine -----------------------------------------------------------------------------
struct edge_engine {
  std::shared_ptr<const waf::bound_policy> pol;
  std::unique_ptr<waf::worker_scratch> ws;
  waf::worker_stats st;
  std::unique_ptr<waf::inspector> in;

  // true: blocked. One keep-alive flow; a blocked request closes it (a new inspector follows).
  bool eval(const std::string& req) {
    if (!in) in = std::move(*waf::inspector::create(pol, *ws));
    std::span<const char> d(req.data(), req.size());
    while (!d.empty()) {
      auto v = in->feed(*ws, st, d);
      if (v.kind == waf::verdict_kind::block) {
        in.reset();
        return true;
      }
      d = d.subspan(v.consumed);
      if (v.request_complete) break;
    }
    return false;
  }
};

// --- libmodsecurity3 -------------------------------------------------------------------------
// Blocks (true) when ModSecurity intervenes or edge's parser refuses the head.
struct modsec_side {
  waf_bench::modsec_engine engine;
  bool load(const std::string& setup, const std::vector<std::string>& files) {
    const std::string base =
        std::string(
            "SecRuleEngine On\nSecRequestBodyAccess On\nSecRequestBodyLimit 13107200\n"
            "SecRequestBodyNoFilesLimit 131072\nSecRequestBodyLimitAction ProcessPartial\n"
            "SecResponseBodyAccess Off\nSecAuditEngine Off\n") +
        waf_bench::modsec_json_body_rule;
    return engine.load(base, setup, files);
  }
  bool eval(const std::string& req) { return engine.eval(req) != 0; }
};

template <class E>
double run_for(E& e, const std::vector<waf_bench::request>& corpus, double seconds, size_t& done,
               size_t& bytes) {
  auto t0 = clk::now();
  done = bytes = 0;
  do {
    for (const auto& r : corpus) {
      e.eval(r.bytes);
      ++done;
      bytes += r.bytes.size();
    }
  } while (ms_since(t0) < seconds * 1000);
  return ms_since(t0) / 1000;
}

}  // namespace

int main(int argc, char** argv) {
  std::string crs = "/usr/share/modsecurity-crs/rules",
              setup = "/etc/modsecurity/crs/crs-setup.conf";
  size_t n = 2000;
  std::string keep_cache;  // a persistent cache dir: the "full" compile is then a cache load too
  double share = 0.2, seconds = 3;
  bool edge_only = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--crs")
      crs = argv[i + 1];
    else if (a == "--setup")
      setup = argv[i + 1];
    else if (a == "--requests")
      n = std::strtoul(argv[i + 1], nullptr, 10);
    else if (a == "--attack-share")
      share = std::strtod(argv[i + 1], nullptr);
    else if (a == "--seconds")
      seconds = std::strtod(argv[i + 1], nullptr);
    else if (a == "--cache")
      keep_cache = argv[i + 1];
    else if (a == "--edge-only")
      edge_only = std::strtoul(argv[i + 1], nullptr, 10) != 0;
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  auto files = conf_files(crs);
  auto corpus = waf_bench::make_corpus(n, share, 42);

  // edge: import, full compile, then reload from the cache.
  auto t = clk::now();
  auto imp = rules::import_secrules(files);
  if (!imp) {
    std::fprintf(stderr, "import: %s\n", imp.error().str().c_str());
    return 1;
  }
  double import_ms = ms_since(t);
  auto cache = keep_cache.empty()
                   ? fs::temp_directory_path() / ("waf-bench-cache-" + std::to_string(::getpid()))
                   : fs::path(keep_cache);
  waf::compile_options co;
  co.cache_dir = cache.string();
  size_t imported = imp->rules.size(), skipped = imp->skipped.size();
  auto rules_copy = imp->rules;
  t = clk::now();
  auto full = waf::ruleset::compile(std::move(imp->rules), co);
  double compile_ms = ms_since(t);
  if (!full) {
    std::fprintf(stderr, "compile: %s\n", full.error().str().c_str());
    return 1;
  }
  // A reload of the unchanged directory: import again, then load the databases from the cache.
  t = clk::now();
  auto imp2 = rules::import_secrules(files);
  if (!imp2) return 1;
  double reimport_ms = ms_since(t);
  auto again = waf::ruleset::compile(std::move(imp2->rules), co);
  double reload_ms = ms_since(t);
  (void)rules_copy;
  if (!again || !(*again)->stats().from_cache) {
    std::fprintf(stderr, "reload from cache failed\n");
    return 1;
  }
  if (keep_cache.empty()) fs::remove_all(cache);
  waf::policy p;
  p.paranoia = 1;
  p.anomaly_threshold = 5;
  p.body_limit = 131072;
  edge_engine ed;
  ed.pol = *waf::bound_policy::bind(*again, p);
  ed.ws = std::make_unique<waf::worker_scratch>(std::move(*waf::worker_scratch::create(**again)));
  if (edge_only) {
    size_t n_done, n_bytes;
    double s = run_for(ed, corpus, seconds, n_done, n_bytes);
    std::printf("  edge        : %9.0f req/s  %7.1f MB/s (edge only)\n", n_done / s,
                n_bytes / s / 1e6);
    return 0;
  }

  modsec_side mo;
  t = clk::now();
  if (!mo.load(setup, files)) return 1;
  double modsec_load_ms = ms_since(t);

  // Verdicts, one pass each.
  size_t agree = 0, edge_block = 0, ms_block = 0, att = 0, edge_att = 0, ms_att = 0, ben = 0,
         edge_fp = 0, ms_fp = 0;
  std::map<std::string, std::pair<size_t, size_t>> by_kind_edge,
      by_kind_ms;  // kind -> (blocked, total)
  std::vector<std::string> disagreements;
  for (const auto& r : corpus) {
    bool a = ed.eval(r.bytes), b = mo.eval(r.bytes);
    agree += a == b;
    if (a != b && disagreements.size() < 5)
      disagreements.push_back(std::string(a ? "edge only: " : "modsecurity only: ") +
                              r.bytes.substr(0, r.bytes.find("\r\n")));
    edge_block += a;
    ms_block += b;
    (r.attack ? att : ben)++;
    if (r.attack) {
      edge_att += a;
      ms_att += b;
    } else {
      edge_fp += a;
      ms_fp += b;
    }
    by_kind_edge[r.kind].first += a;
    by_kind_edge[r.kind].second++;
    by_kind_ms[r.kind].first += b;
  }

  size_t ed_n, ed_b, ms_n, ms_b;
  double ed_s = run_for(ed, corpus, seconds, ed_n, ed_b);
  double ms_s = run_for(mo, corpus, seconds, ms_n, ms_b);
  double ed_rps = ed_n / ed_s, ms_rps = ms_n / ms_s;

  std::printf(
      "WAF bench: OWASP CRS %s at paranoia 1, threshold 5; %zu requests (%zu attack, %zu benign), "
      "1 core\n",
      crs.c_str(), corpus.size(), att, ben);
  std::printf(
      "  import: %zu rules imported, %zu skipped (listed by `edgectl rules check "
      "--list-skipped`)\n",
      imported, skipped);
  std::printf(
      "  edge: import %.0f ms + full compile %.0f ms%s; reload of the unchanged rules %.0f ms "
      "(import %.0f ms + "
      "cache load %.0f ms); modsecurity load %.0f ms\n",
      import_ms, compile_ms, (*full)->stats().from_cache ? " (from a kept cache)" : "", reload_ms,
      reimport_ms, (*again)->stats().compile_ms, modsec_load_ms);
  std::printf("  edge        : %9.0f req/s  %7.1f MB/s\n", ed_rps, ed_b / ed_s / 1e6);
  std::printf("  modsecurity : %9.0f req/s  %7.1f MB/s\n", ms_rps, ms_b / ms_s / 1e6);
  std::printf("  throughput ratio edge/modsecurity: %.1fx\n", ed_rps / ms_rps);
  std::printf("  verdict agreement: %.1f%% (%zu/%zu); blocked edge %zu, modsecurity %zu\n",
              100.0 * agree / corpus.size(), agree, corpus.size(), edge_block, ms_block);
  std::printf(
      "  attacks blocked: edge %zu/%zu, modsecurity %zu/%zu; benign blocked: edge %zu/%zu, "
      "modsecurity %zu/%zu\n",
      edge_att, att, ms_att, att, edge_fp, ben, ms_fp, ben);
  for (const auto& [k, v] : by_kind_edge)
    std::printf("    %-8s edge %4zu/%-4zu modsecurity %4zu/%-4zu\n", k.c_str(), v.first, v.second,
                by_kind_ms[k].first, v.second);
  for (const auto& d : disagreements) std::printf("  disagreement, %s\n", d.c_str());
  return 0;
}
