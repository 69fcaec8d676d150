#include "edge/drain.hh"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "edge/prom_text.hh"

namespace edge {
namespace {

int64_t ms_between(drain_control::clock::time_point a, drain_control::clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
}

}  // namespace

const char* to_string(drain_phase p) {
  static constexpr const char* texts[] = {EDGE_DRAIN_PHASES(COMMON_ENUM_TEXT)};
  return common::enum_text(p, texts);
}

void drain_control::begin(const std::string& why, bool exit, timing t, clock::time_point now) {
  if (exit && !exit_) {
    exit_ = true;
    if (phase_ != drain_phase::serving)
      spdlog::info("drain ({}): edged exits once the running drain is over ({})", why,
                   to_string(phase_));
  }
  if (phase_ != drain_phase::serving) return;
  t_ = t;
  phase_ = drain_phase::grace;
  began_ = now;
  refuse_at_ = now + std::chrono::milliseconds(t.grace_ms);
  withdrawn_this_drain_ = false;
  lingering_ = false;
  ++ctr_.started;
  spdlog::info(
      "drain ({}) step 1: /readyz fails; new connections accepted for {} ms more, then refused; "
      "established ones get {} ms after that{}",
      why, t.grace_ms, t.timeout_ms, exit_ ? "; then edged exits" : "");
}

std::string drain_control::undrain(clock::time_point now) {
  if (phase_ == drain_phase::serving) return "not draining";
  if (exit_) return "edged is stopping (SIGTERM or drain --exit); it cannot be undrained";
  hooks_.set_worker_phase(0);
  spdlog::info("undrain: accepting again and /readyz passes ({} ms after the drain began, was {})",
               ms_between(began_, now), to_string(phase_));
  phase_ = drain_phase::serving;
  ++ctr_.undrains;
  return {};
}

void drain_control::announcer_report(bool announced, clock::time_point now) {
  const int was = announced_;
  announced_ = announced ? 1 : 0;
  if (was == announced_) return;
  if (!announced && draining() && !withdrawn_this_drain_) {
    withdrawn_this_drain_ = true;
    ++ctr_.withdrawn;
    spdlog::info(
        "drain step 2: the announcer withdrew the VIPs from BGP ({} ms after the drain began)",
        ms_between(began_, now));
  } else {
    spdlog::info("announcer: VIPs {} BGP", announced ? "announced to" : "withdrawn from");
  }
}

void drain_control::to_drained(clock::time_point now) {
  phase_ = drain_phase::drained;
  if (exit_) {
    ++ctr_.exits;
    spdlog::info("drain step 5: over after {} ms; edged exits", ms_between(began_, now));
  }
}

void drain_control::tick(clock::time_point now) {
  switch (phase_) {
    case drain_phase::serving:
    case drain_phase::drained:
      return;
    case drain_phase::grace:
      if (now < refuse_at_) return;
      ++ctr_.refusing;
      if (!hooks_.any_tcp) {
        spdlog::info(
            "drain step 3: grace over (no tcp/tls service: nothing to refuse or wait for)");
        to_drained(now);
        return;
      }
      hooks_.set_worker_phase(1);
      phase_ = drain_phase::refusing;
      deadline_ = now + std::chrono::milliseconds(t_.timeout_ms);
      // The workers answer phase 1 with their first count; a worker that is gone cannot answer.
      reset_wait_until_ = now + std::chrono::seconds(2);
      open_at_refuse_ = UINT64_MAX;
      return;
    case drain_phase::refusing: {
      const bool answered = hooks_.workers_at(1);
      if (!answered && now < reset_wait_until_) return;
      const uint64_t open = hooks_.open_connections();
      if (open_at_refuse_ == UINT64_MAX) {
        open_at_refuse_ = open;
        spdlog::info(
            "drain step 3: grace over, new connections refused; draining {} connection(s) for up "
            "to {} ms",
            open, t_.timeout_ms);
      }
      if (open == 0) {
        ++ctr_.finished;
        spdlog::info("drain step 4: drained, every connection finished in {} ms",
                     ms_between(refuse_at_, now));
        to_drained(now);
        return;
      }
      if (now < deadline_) return;
      hooks_.set_worker_phase(2);
      phase_ = drain_phase::resetting;
      reset_wait_until_ = now + std::chrono::seconds(2);
      return;
    }
    case drain_phase::resetting:
      if (!lingering_) {
        if (!hooks_.workers_at(2) && now < reset_wait_until_) return;
        // A RST whose sequence number the client has not reached yet earns a challenge ACK (RFC
        // 5961): the workers stay up a little longer to answer it with the stack's RST.
        lingering_ = true;
        linger_until_ = now + std::chrono::milliseconds(100);
        return;
      }
      if (now < linger_until_) return;
      lingering_ = false;
      {
        const uint64_t reset = hooks_.reset_connections();
        ++ctr_.deadline;
        ctr_.connections_reset += reset;
        spdlog::warn("drain step 4: drain deadline ({} ms) passed: {} connection(s) reset",
                     t_.timeout_ms, reset);
      }
      to_drained(now);
      return;
  }
}

std::string drain_control::state_json(clock::time_point now) const {
  nlohmann::json j;
  j["phase"] = to_string(phase_);
  j["exit_requested"] = exit_;
  j["announced"] = announced_ < 0 ? nlohmann::json() : nlohmann::json(announced_ == 1);
  if (phase_ != drain_phase::serving) {
    j["since_ms"] = ms_between(began_, now);
    j["grace_ms"] = t_.grace_ms;
    j["timeout_ms"] = t_.timeout_ms;
    if (phase_ == drain_phase::grace) j["refuse_in_ms"] = ms_between(now, refuse_at_);
    if (phase_ == drain_phase::refusing) j["open_connections"] = hooks_.open_connections();
  }
  nlohmann::json c;
#define EDGE_DRAIN_COUNTER_JSON(member, name, help) c[#member] = ctr_.member;
  EDGE_DRAIN_COUNTERS(EDGE_DRAIN_COUNTER_JSON)
#undef EDGE_DRAIN_COUNTER_JSON
  j["counters"] = c;
  return j.dump();
}

void drain_control::append_metrics(prom_text::writer& out) const {
#define EDGE_DRAIN_COUNTER_TEXT(member, name, help) \
  out.family(name, "counter", help);                \
  out.sample(ctr_.member);
  EDGE_DRAIN_COUNTERS(EDGE_DRAIN_COUNTER_TEXT)
#undef EDGE_DRAIN_COUNTER_TEXT
  out.family(
      "edge_drain_phase", "gauge",
      "Drain phase: 0 serving, 1 grace (not ready, accepting), 2 refusing new connections, 3 "
      "resetting at the deadline, 4 drained.");
  out.sample(static_cast<int>(phase_));
  out.family("edge_bgp_announced", "gauge",
             "What the BGP announcer last reported: 1 VIPs announced, 0 withdrawn, -1 no report "
             "yet.");
  out.sample(announced_);
}

}  // namespace edge
