// Every counter of l4::tcp::counters and l4::lb::lb_counters is in /metrics, summed over workers,
// under the names dashboards already use. The structs and the families come from one .def table
// each; the size checks catch a counter added to a struct outside its table.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

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
  std::string out;
  edge::append_counter_families<Counters>(out, families, workers);
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

TEST(prom_text, label_values_are_escaped) {
  EXPECT_EQ(edge::prom_text::label("service", "plain"), "service=\"plain\"");
  EXPECT_EQ(edge::prom_text::label("service", "a\"b\\c\nd"), "service=\"a\\\"b\\\\c\\nd\"");
}

}  // namespace
