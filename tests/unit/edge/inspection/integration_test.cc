// The three pieces together as the appliance will use them: waf_control publishes into a snapshot
// pointer, a worker adopts it (prepare) and opens connections with the service's policy, the audit
// drainer writes the log, and /metrics text shows reloads and per-rule hits.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>

#include "edge/inspection/waf_conn.hh"
#include "edge/inspection/waf_control.hh"
#include "edge/inspection/waf_metrics.hh"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string run_request(edge::waf_conn& c, const std::string& req, uint16_t* status) {
  std::string fwd;
  *status = 0;
  std::span<const char> d(req.data(), req.size());
  while (!d.empty()) {
    auto a = c.feed(d);
    for (auto s : a.forward) fwd.append(s.data(), s.size());
    if (a.what == edge::waf_action::kind::block) {
      *status = a.status;
      break;
    }
    d = d.subspan(a.consumed);
  }
  return fwd;
}

TEST(waf_integration, rule_change_applies_to_new_connections_old_ones_continue_audit_and_metrics) {
  auto root = fs::temp_directory_path() / ("edge_waf_int_" + std::to_string(getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "cache");
  fs::copy(RULES_SHIPPED_DIR, root / "rules", fs::copy_options::recursive);

  // The appliance's snapshot, reduced to the WAF part.
  std::mutex mu;
  std::shared_ptr<const edge::waf_rules_snapshot> snap;
  auto publish = [&](std::shared_ptr<const edge::waf_rules_snapshot> s) {
    std::lock_guard lk(mu);
    snap = std::move(s);
  };
  auto current = [&] {
    std::lock_guard lk(mu);
    return snap;
  };
  edge::waf_control_config cfg;
  cfg.rules_dir = (root / "rules").string();
  cfg.cache_dir = (root / "cache").string();
  cfg.services = {{.service = "web",
                   .policy_file = {},
                   .node = YAML::Load("mode: enforce"),
                   .where = "edge.yaml"}};
  auto ctl = edge::waf_control::create(cfg, publish);
  ASSERT_TRUE(ctl.has_value()) << ctl.error().str();
  ASSERT_TRUE((*ctl)->start_watching().has_value());

  edge::waf_audit_ring ring(256);
  auto w = edge::waf_worker::create(2, *current()->rules, &ring);
  ASSERT_TRUE(w.has_value());
  auto audit = edge::waf_audit_drainer::create((root / "audit.log").string());
  ASSERT_TRUE(audit.has_value());
  (*audit)->add_ring(&ring);

  const edge::waf_conn_info info{edge::waf_endpoint::v4({10, 0, 0, 9}, 40000),
                                 edge::waf_endpoint::v4({10, 0, 0, 1}, 80), "web"};
  std::string req = "GET /x?a=forbidden-token HTTP/1.1\r\nHost: a\r\n\r\n";
  auto old_conn =
      edge::waf_conn::create(**w, current()->policy_for("web"), waf::inspector::mode::http, info);
  ASSERT_TRUE(old_conn.has_value());
  uint16_t st = 0;
  EXPECT_EQ(run_request(*old_conn, req, &st), req);  // not a rule yet
  EXPECT_EQ(st, 0);

  std::ofstream(root / "rules" / ".tmp")
      << "rules:\n  - id: 100900\n    phase: args\n    operator: contains\n"
         "    pattern: forbidden-token\n    action: block\n";
  fs::rename(root / "rules" / ".tmp", root / "rules" / "custom.yaml");
  auto deadline = std::chrono::steady_clock::now() + 1500ms;
  while (current()->generation < 2 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  auto s2 = current();
  ASSERT_EQ(s2->generation, 2u);

  // Worker adopts the snapshot: grow the scratch, then new connections use the new policy.
  ASSERT_TRUE((*w)->prepare(*s2->rules).has_value());
  auto new_conn =
      edge::waf_conn::create(**w, s2->policy_for("web"), waf::inspector::mode::http, info);
  ASSERT_TRUE(new_conn.has_value());
  EXPECT_EQ(run_request(*new_conn, req, &st), "");
  EXPECT_EQ(st, 403);
  // The connection opened before the change keeps its rules (and its ruleset stays alive).
  EXPECT_EQ(run_request(*old_conn, req, &st), req);
  EXPECT_EQ(st, 0);

  EXPECT_EQ((*audit)->drain_once(), 1u);
  std::ifstream f(root / "audit.log");
  std::string line;
  ASSERT_TRUE(std::getline(f, line));
  EXPECT_NE(line.find("\"rule_id\":100900"), std::string::npos) << line;
  EXPECT_NE(line.find("\"client\":\"10.0.0.9:40000\""), std::string::npos) << line;
  EXPECT_NE(line.find("\"request_id\":\"" + std::string(new_conn->last_request_id()) + "\""),
            std::string::npos);

  const waf::worker_stats* ws[] = {&(*w)->stats()};
  edge::prom_text::writer page;
  edge::append_waf_metrics(page, {.control = ctl->get(), .workers = ws, .audit = audit->get()});
  const std::string& text = page.text();
  EXPECT_NE(
      text.find("edge_waf_rule_hits_total{service=\"web\",rule=\"100900\",verdict=\"block\"} 1\n"),
      std::string::npos)
      << text;
  EXPECT_NE(text.find("edge_waf_reloads_total{outcome=\"ok\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("edge_waf_blocked_rules_total 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("edge_waf_requests_total 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("edge_waf_audit_dropped_total 0\n"), std::string::npos) << text;
  // The fail-closed outcomes have their own series next to the other worker counters.
  for (const char* series :
       {"edge_waf_confirm_errors_total 0\n", "edge_waf_blocked_engine_error_total 0\n",
        "edge_waf_scan_errors_total 0\n", "edge_waf_cache_rejected_total 0\n"})
    EXPECT_NE(text.find(series), std::string::npos) << series;
  const auto m = (*ctl)->metrics();
  EXPECT_GT(m.last_reload_ms, 0.0);
  EXPECT_GE(m.last_reload_ms, m.last_compile_ms) << "a reload includes its compile";
  EXPECT_GE(m.reload_ms_total, m.last_reload_ms);
  EXPECT_GE(m.compile_ms_total, m.last_compile_ms);
  for (const char* series :
       {"edge_waf_compile_seconds_total ", "edge_waf_last_reload_milliseconds ",
        "edge_waf_reload_seconds_total ", "edge_waf_last_compile_milliseconds{"})
    EXPECT_NE(text.find(std::string("\n") + series), std::string::npos) << series;
  (*ctl)->stop();
  fs::remove_all(root);
}

}  // namespace
