// Every counter of l4::tcp::counters and l4::lb::lb_counters, every relay end and every admin
// counter is in /metrics, summed over workers, under the names dashboards already use. The
// structs and the families come from one table each; the size checks catch a counter added to a
// struct outside its table. And the one writer: label values escaped, HELP/TYPE once per family.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "edge/admin.hh"
#include "edge/metrics_counters.hh"

namespace {

constexpr size_t tcp_rows = std::size(edge::tcp_counter_families);
constexpr size_t lb_rows = std::size(edge::lb_counter_families);
static_assert(sizeof(l4::lb::lb_counters) == lb_rows * sizeof(common::counter),
              "an lb counter outside l4/lb/counters.def would not reach /metrics");
static_assert(sizeof(l4::tcp::counters) == tcp_rows * sizeof(common::counter) +
                                               sizeof(l4::tcp::counters::resets_sent) +
                                               sizeof(l4::tcp::counters::drops),
              "a tcp counter outside l4/tcp/counters.def would not reach /metrics");

// Sets every counter of two workers (row i: i + 1 and 1000 * (i + 1)), renders, and checks each
// family's header and summed sample.
template <class Counters, size_t N>
void check_all_exported(const edge::counter_family<Counters> (&families)[N]) {
  Counters a, b;
  for (size_t i = 0; i < N; ++i) {
    (a.*families[i].field).set(i + 1);
    (b.*families[i].field).set(1000 * (i + 1));
  }
  const Counters* workers[] = {&a, &b};
  edge::prom_text::writer page;
  edge::append_counter_families<Counters>(page, families, workers);
  const std::string& out = page.text();
  for (size_t i = 0; i < N; ++i) {
    const std::string name = families[i].name;
    EXPECT_NE(out.find("# TYPE " + name + " " + families[i].type + "\n"), std::string::npos)
        << name;
    EXPECT_NE(out.find("# HELP " + name + " " + families[i].help + "\n"), std::string::npos)
        << name;
    EXPECT_NE(out.find("\n" + name + " " + std::to_string(1001 * (i + 1)) + "\n"),
              std::string::npos)
        << name << " not exported with the sum over workers";
  }
}

TEST(metrics_counters, every_tcp_counter_is_exported) {
  check_all_exported(edge::tcp_counter_families);
}

TEST(metrics_counters, every_lb_counter_is_exported) {
  check_all_exported(edge::lb_counter_families);
}

// The five counters that were counted but never exported, and every name that existed before
// the tables (dashboards depend on them).
TEST(metrics_counters, names_kept_and_missing_ones_added) {
  std::vector<std::string> names;
  for (const auto& f : edge::tcp_counter_families) names.push_back(f.name);
  for (const auto& f : edge::lb_counter_families) names.push_back(f.name);
  auto has = [&](const char* n) { return std::find(names.begin(), names.end(), n) != names.end(); };
  for (const char* n :
       {"edge_tcp_active", "edge_tcp_opened_total", "edge_tcp_refused_total",
        "edge_tcp_syn_received_total", "edge_tcp_retransmits_total", "edge_tcp_rto_total",
        "edge_tcp_fast_retransmits_total", "edge_tcp_recoveries_total",
        "edge_tcp_loss_probes_total", "edge_tcp_rack_lost_total", "edge_tcp_lost_retransmits_total",
        "edge_tcp_send_map_merges_total", "edge_tcp_syn_cookies_sent_total",
        "edge_tcp_syn_cookies_validated_total", "edge_tcp_syn_cookies_failed_total",
        "edge_tcp_challenge_acks_total", "edge_tcp_persist_probes_total",
        "edge_tcp_ooo_segments_total", "edge_tcp_segments_in_total", "edge_tcp_segments_out_total",
        "edge_tcp_handshake_timeouts_total", "edge_tcp_time_wait_recycled_total",
        "edge_tcp_peer_mss_clamped_total", "edge_tcp_pmtu_lowered_total",
        "edge_tcp_acks_rate_limited_total", "edge_tcp_cookie_key_rotations_total",
        "edge_l4_conn_hits_total", "edge_l4_conn_misses_total", "edge_l4_nat_forward_total",
        "edge_l4_nat_reply_total", "edge_l4_encap_ipip_total", "edge_l4_encap_gue_total",
        "edge_l4_icmp_routed_total", "edge_l4_ptb_sent_total", "edge_l4_mss_clamped_total",
        "edge_l4_neighbor_requests_total",
        // were counted but not exported
        "edge_tcp_delayed_acks_total", "edge_tcp_closed_total", "edge_l4_client_option_added_total",
        "edge_l4_client_option_no_room_total", "edge_l4_conn_reused_total",
        "edge_l4_neighbor_table_full_total"})
    EXPECT_TRUE(has(n)) << n;
  std::sort(names.begin(), names.end());
  EXPECT_EQ(std::adjacent_find(names.begin(), names.end()), names.end()) << "a name twice";
}

// Each EDGE_RELAY_ENDS row is a sample of edge_relay_ends_total, summed over workers.
TEST(metrics_counters, every_relay_end_is_exported) {
  edge::relay_counters a, b;
  for (size_t r = 0; r < edge::relay_end_count; ++r) {
    a.ends[r].set(r + 1);
    b.ends[r].set(1000 * (r + 1));
  }
  const edge::relay_counters* workers[] = {&a, &b};
  edge::prom_text::writer page;
  edge::append_relay_families(page, workers);
  const std::string& out = page.text();
  size_t r = 0;
#define X(name, desc)                                                    \
  EXPECT_NE(out.find("\nedge_relay_ends_total{outcome=\"" #name "\"} " + \
                     std::to_string(1001 * (r + 1)) + "\n"),             \
            std::string::npos)                                           \
      << #name " not exported with the sum over workers\n"               \
      << out;                                                            \
  ++r;
  EDGE_RELAY_ENDS(X)
#undef X
  EXPECT_EQ(r, edge::relay_end_count);
}

// Each EDGE_RELAY_STATES row but free is a sample of edge_relay_connections, summed over workers.
TEST(metrics_counters, every_relay_state_is_exported) {
  edge::relay_counters a, b;
  for (size_t st = 0; st < edge::relay_state_count; ++st) {
    a.states[st].set(st + 1);
    b.states[st].set(1000 * (st + 1));
  }
  a.bad_moves.set(2);
  const edge::relay_counters* workers[] = {&a, &b};
  edge::prom_text::writer page;
  edge::append_relay_families(page, workers);
  const std::string& out = page.text();
  for (size_t st = 0; st < edge::relay_state_count; ++st) {
    const std::string line = "\nedge_relay_connections{state=\"" +
                             std::string(edge::relay_state_names[st]) + "\"} " +
                             std::to_string(1001 * (st + 1)) + "\n";
    if (static_cast<edge::relay_state>(st) == edge::relay_state::free)
      EXPECT_EQ(out.find("state=\"free\""), std::string::npos);
    else
      EXPECT_NE(out.find(line), std::string::npos) << edge::relay_state_names[st] << "\n" << out;
  }
  EXPECT_NE(out.find("\nedge_relay_bad_moves_total 2\n"), std::string::npos) << out;
}

// Each EDGE_ADMIN_COUNTERS row is a family with its help and its value.
TEST(metrics_counters, every_admin_counter_is_exported) {
  edge::admin_counters c;
  uint64_t v = 0;
#define X(member, name, help) c.member = ++v * 7;
  EDGE_ADMIN_COUNTERS(X)
#undef X
  edge::prom_text::writer page;
  edge::append_admin_counters(page, c);
  const std::string& out = page.text();
  v = 0;
#define X(member, name, help)                                                         \
  ++v;                                                                                \
  EXPECT_NE(out.find("# HELP " name " " help "\n# TYPE " name " counter\n" name " " + \
                     std::to_string(v * 7) + "\n"),                                   \
            std::string::npos)                                                        \
      << name " not exported\n"                                                       \
      << out;
  EDGE_ADMIN_COUNTERS(X)
#undef X
  // and the server renders that table
  edge::admin_server server;
  edge::prom_text::writer served;
  server.append_metrics(served);
#define X(member, name, help) \
  EXPECT_NE(served.text().find("\n" name " 0\n"), std::string::npos) << name;
  EDGE_ADMIN_COUNTERS(X)
#undef X
}

// A hostile label value (quote, backslash, newline) is escaped and stays one sample line.
TEST(prom_text, label_values_are_escaped) {
  edge::prom_text::writer w;
  w.family("edge_x_total", "counter", "X.");
  w.sample({{"service", "plain"}}, 1);
  w.sample({{"service", "a\"b\\c\nd"}, {"rule", "9"}}, 2);
  w.sample({{"service", "x\"} 99\nedge_forged_total 1\n"}}, 3);
  EXPECT_EQ(w.text(),
            "# HELP edge_x_total X.\n# TYPE edge_x_total counter\n"
            "edge_x_total{service=\"plain\"} 1\n"
            "edge_x_total{service=\"a\\\"b\\\\c\\nd\",rule=\"9\"} 2\n"
            "edge_x_total{service=\"x\\\"} 99\\nedge_forged_total 1\\n\"} 3\n");
  EXPECT_EQ(std::count(w.text().begin(), w.text().end(), '\n'), 5);
}

// HELP and TYPE once per family, however many samples, and a family named again adds none.
TEST(prom_text, header_once_per_family) {
  edge::prom_text::writer w;
  w.family("edge_y", "gauge", "Y.");
  for (int i = 0; i < 100; ++i) w.sample({{"i", std::to_string(i)}}, i);
  w.family("edge_z_seconds", "gauge", "Z.");
  w.sample(-1.5);
  w.family("edge_y", "gauge", "Y.");
  w.sample({{"i", "100"}}, uint64_t{18446744073709551615u});
  const std::string& t = w.text();
  auto count = [&](const std::string& s) {
    size_t n = 0;
    for (size_t at = t.find(s); at != std::string::npos; at = t.find(s, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("# HELP edge_y "), 1u);
  EXPECT_EQ(count("# TYPE edge_y gauge\n"), 1u);
  EXPECT_EQ(count("\nedge_y{i="), 101u);
  EXPECT_NE(t.find("\nedge_z_seconds -1.5\n"), std::string::npos);
  EXPECT_NE(t.find("\nedge_y{i=\"100\"} 18446744073709551615\n"), std::string::npos);
}

}  // namespace
