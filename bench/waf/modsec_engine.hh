#pragma once
// libmodsecurity3 (through modsec_harness.h) as the WAF bench and the differential harness drive
// it: a base configuration, then the CRS setup file and rule files; each request split with edge's
// own HTTP parser, so that both engines see the same method, URI, headers and body.
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "modsec_harness.h"
#include "waf/http.hh"

namespace waf_bench {

// modsecurity.conf-recommended's rule 200001: the JSON body processor, as ModSecurity is deployed
// (the CRS alone leaves JSON bodies unparsed, so their values would not be ARGS; edge parses them).
inline constexpr const char* modsec_json_body_rule =
    "SecRule REQUEST_HEADERS:Content-Type \"@rx ^application/json\" "
    "\"id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON\"\n";

class modsec_engine {
 public:
  modsec_engine() = default;
  modsec_engine(const modsec_engine&) = delete;
  modsec_engine& operator=(const modsec_engine&) = delete;
  ~modsec_engine() {
    if (loaded_) msh_unload();
  }

  // `base` is configuration text; `setup` (skipped when it does not exist) and `files` are loaded
  // after it, in that order. Prints ModSecurity's error and returns false on failure.
  bool load(const std::string& base, const std::string& setup,
            const std::vector<std::string>& files) {
    std::vector<std::string> all;
    if (!setup.empty() && std::filesystem::exists(setup)) all.push_back(setup);
    all.insert(all.end(), files.begin(), files.end());
    std::vector<const char*> ptrs;
    for (const auto& f : all) ptrs.push_back(f.c_str());
    char err[512];
    if (msh_load(base.c_str(), ptrs.data(), ptrs.size(), err, sizeof err) != 0) {
      std::fprintf(stderr, "modsecurity: %s\n", err);
      return false;
    }
    loaded_ = true;
    return true;
  }

  // Phases 1 and 2 of one raw request. Returns -1 when edge's parser refuses the head (nothing
  // reaches ModSecurity), else 1 when ModSecurity intervened (status >= 400) and 0 when not. With
  // `ids`, the ids of the rules that matched and logged, up to `cap` of them, go there and *n_ids
  // gets how many there were.
  int eval(const std::string& req, unsigned* ids = nullptr, size_t cap = 0,
           size_t* n_ids = nullptr) {
    waf::http_limits lim;
    waf::head_scan_state hs;
    size_t end = 0;
    if (waf::find_head_end(req.data(), req.size(), lim, hs, end) != waf::http_error::none || !end)
      return -1;
    slots_.resize(lim.max_header_count);
    waf::request_head h;
    if (waf::parse_request_head(std::string_view(req.data(), end), lim, slots_, h) !=
        waf::http_error::none)
      return -1;
    hdrs_.clear();
    for (const auto& x : h.headers)
      hdrs_.push_back({x.name.data(), x.name.size(), x.value.data(), x.value.size()});
    const std::string uri(h.target), method(h.method);
    const char* version = h.minor_version ? "1.1" : "1.0";
    if (ids == nullptr)
      return msh_eval(method.c_str(), uri.c_str(), version, hdrs_.data(), hdrs_.size(),
                      req.data() + end, req.size() - end);
    return msh_eval_ids(method.c_str(), uri.c_str(), version, hdrs_.data(), hdrs_.size(),
                        req.data() + end, req.size() - end, ids, cap, n_ids);
  }

 private:
  bool loaded_ = false;
  std::vector<waf::http_header> slots_;
  std::vector<msh_header> hdrs_;
};

}  // namespace waf_bench
