// Benign traffic through the OWASP CRS that Debian ships (modsecurity-crs 3.3.x, imported as edge
// imports it) at paranoia level 1 with CRS's inbound threshold (5): ordinary uploads (images, a
// PDF, a .sql file whose text is full of SQL), forms and JSON API calls, browser headers. None may
// be blocked; the same engine must block the attacks next to them (so the corpus test can fail).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "engine_fixture.hh"
#include "rules/secrule.hh"

#ifndef CRS_CACHE_DIR
#error "CRS_CACHE_DIR must name a cache directory in the build tree"
#endif
#ifndef BENIGN_CORPUS_DIR
#error "BENIGN_CORPUS_DIR must name tests/unit/waf/benign"
#endif

namespace {

namespace fs = std::filesystem;

std::unique_ptr<waf_test::engine> import_crs() {
  const fs::path dir = "/usr/share/modsecurity-crs/rules";
  EXPECT_TRUE(fs::is_directory(dir))
      << "modsecurity-crs is a build dependency (deploy/install-deps.sh)";
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".conf") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  auto imp = rules::import_secrules(files);
  EXPECT_TRUE(imp) << (imp ? "" : imp.error().str());
  if (!imp) return nullptr;
  waf::compile_options co;
  co.cache_dir = CRS_CACHE_DIR;  // a rerun loads the databases instead of compiling (~1 min)
  auto rs = waf::ruleset::compile(std::move(imp->rules), co);
  EXPECT_TRUE(rs) << (rs ? "" : rs.error().str());
  if (!rs) return nullptr;
  waf::policy p;
  p.paranoia = 1;
  p.anomaly_threshold = 5;
  auto b = waf::bound_policy::bind(*rs, p);
  EXPECT_TRUE(b);
  if (!b) return nullptr;
  auto e = std::make_unique<waf_test::engine>();
  e->pol = *b;
  e->ws = std::make_unique<waf::worker_scratch>(std::move(*waf::worker_scratch::create(**rs)));
  return e;
}

// Imported and compiled once for the tests of this file (seconds).
waf_test::engine* crs_engine() {
  static std::unique_ptr<waf_test::engine> e = import_crs();
  return e.get();
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string ids(const waf_test::outcome& o) {
  std::ostringstream s;
  for (auto id : o.ids) s << id << ' ';
  return s.str();
}

TEST(body_crs, benign_uploads_forms_and_json_pass_crs_at_pl1) {
  waf_test::engine* e = crs_engine();
  ASSERT_TRUE(e);
  std::vector<fs::path> corpus;
  for (const auto& f : fs::directory_iterator(BENIGN_CORPUS_DIR))
    if (f.path().extension() == ".http") corpus.push_back(f.path());
  std::sort(corpus.begin(), corpus.end());
  ASSERT_GE(corpus.size(), 15u);
  size_t blocked = 0, uploads = 0;
  for (const auto& p : corpus) {
    const std::string req = read_file(p);
    // Whole, and in 1 KiB segments (as TCP would hand it over).
    std::vector<std::string> segs;
    for (size_t i = 0; i < req.size(); i += 1024) segs.push_back(req.substr(i, 1024));
    for (const auto& o : {waf_test::run1(*e, req), waf_test::run(*e, segs)}) {
      EXPECT_NE(o.kind, waf::verdict_kind::block)
          << p.filename() << ": status " << o.status << ", rules " << ids(o) << "score " << o.score;
      EXPECT_EQ(o.requests, 1u) << p.filename();
      blocked += o.kind == waf::verdict_kind::block;
    }
    uploads += p.filename().string().starts_with("upload_");
  }
  EXPECT_EQ(blocked, 0u);
  EXPECT_GE(uploads, 4u);
  EXPECT_GE(e->st.body_multipart.get(), 10u);
  EXPECT_GE(e->st.body_json.get(), 12u);
  EXPECT_EQ(e->st.multipart_strict.get(), 0u) << "browser-made multipart bodies are strict";
}

std::string post(const std::string& ct, const std::string& body) {
  return "POST /api HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: Mozilla/5.0\r\nAccept: "
         "*/*\r\nContent-Type: " +
         ct + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

TEST(body_crs, crs_blocks_attacks_in_multipart_fields_and_json_values) {
  waf_test::engine* e = crs_engine();
  ASSERT_TRUE(e);
  const std::string b = "----WebKitFormBoundaryAbC";
  const std::string mp = "--" + b +
                         "\r\nContent-Disposition: form-data; name=\"comment\"\r\n\r\n"
                         "1' UNION SELECT password FROM users WHERE '1'='1\r\n--" +
                         b + "--\r\n";
  const std::string reqs[] = {
      post("multipart/form-data; boundary=" + b, mp),
      post("application/json", R"({"user":{"name":"x' or sleep(5)#","id":1}})"),
      post("application/json", R"({"html":"<script>alert(document.cookie)</script>"})"),
      post("multipart/form-data; boundary=" + b,
           "--" + b +
               "\r\nContent-Disposition: form-data; name=\"f\"; "
               "filename=\"shell.php\"\r\n\r\n<?php ?>\r\n--" +
               b + "--\r\n"),
  };
  for (const auto& r : reqs) {
    auto o = waf_test::run1(*e, r);
    EXPECT_EQ(o.kind, waf::verdict_kind::block) << r;
    EXPECT_EQ(o.status, 403) << r;
  }
}

}  // namespace
