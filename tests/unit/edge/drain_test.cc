// The drain state machine (edge/drain.hh) with fake workers and a fake clock: the order of the
// steps, their counters, undrain, and an exit that waits for the drain to end.
#include "edge/drain.hh"

#include <gtest/gtest.h>

#include "edge/admin.hh"

namespace edge {
namespace {

using namespace std::chrono_literals;

struct fake_workers {
  uint8_t phase = 0, done = 0;
  uint64_t open = 0, reset = 0;
  drain_hooks hooks() {
    drain_hooks h;
    h.set_worker_phase = [this](uint8_t p) { phase = p; };
    h.workers_at = [this](uint8_t p) { return done >= p; };
    h.open_connections = [this] { return open; };
    h.reset_connections = [this] { return reset; };
    return h;
  }
};

TEST(drain, steps_in_order_connections_finish) {
  fake_workers w;
  drain_control d(w.hooks());
  const auto t0 = drain_control::clock::time_point{} + 1000s;
  w.open = 3;
  d.begin("test", false, {.grace_ms = 1000, .timeout_ms = 5000}, t0);
  EXPECT_EQ(d.phase(), drain_phase::grace);
  EXPECT_TRUE(d.draining());
  EXPECT_EQ(d.counters().started, 1u);
  d.tick(t0 + 999ms);
  EXPECT_EQ(w.phase, 0) << "still accepting in the grace period";
  d.announcer_report(false, t0 + 500ms);
  EXPECT_EQ(d.counters().withdrawn, 1u);
  d.tick(t0 + 1000ms);
  EXPECT_EQ(w.phase, 1) << "refusing after the grace period";
  EXPECT_EQ(d.counters().refusing, 1u);
  d.tick(t0 + 1100ms);
  EXPECT_EQ(d.phase(), drain_phase::refusing) << "the workers have not answered yet";
  w.done = 1;
  d.tick(t0 + 1200ms);
  EXPECT_EQ(d.phase(), drain_phase::refusing) << "3 connections open";
  w.open = 0;
  d.tick(t0 + 2000ms);
  EXPECT_EQ(d.phase(), drain_phase::drained);
  EXPECT_EQ(d.counters().finished, 1u);
  EXPECT_EQ(d.counters().deadline, 0u);
  EXPECT_FALSE(d.exit_ready()) << "no exit was asked";
  // SIGTERM on a drained node: exits at once.
  d.begin("SIGTERM", true, {}, t0 + 3000ms);
  EXPECT_TRUE(d.exit_ready());
  EXPECT_EQ(d.counters().started, 1u);
}

TEST(drain, deadline_resets_then_exits) {
  fake_workers w;
  drain_control d(w.hooks());
  const auto t0 = drain_control::clock::time_point{} + 1000s;
  w.open = 2;
  w.reset = 2;
  d.begin("SIGTERM", true, {.grace_ms = 0, .timeout_ms = 100}, t0);
  d.tick(t0);
  w.done = 1;
  d.tick(t0 + 10ms);
  d.tick(t0 + 99ms);
  EXPECT_EQ(w.phase, 1);
  d.tick(t0 + 110ms);
  EXPECT_EQ(w.phase, 2) << "deadline: reset";
  EXPECT_FALSE(d.exit_ready());
  w.done = 2;
  d.tick(t0 + 120ms);  // linger for challenge ACKs
  EXPECT_FALSE(d.exit_ready());
  d.tick(t0 + 230ms);
  EXPECT_TRUE(d.exit_ready());
  EXPECT_EQ(d.counters().deadline, 1u);
  EXPECT_EQ(d.counters().connections_reset, 2u);
  EXPECT_EQ(d.counters().exits, 1u);
  EXPECT_FALSE(d.undrain(t0 + 300ms).empty()) << "an exiting drain cannot be undrained";
}

TEST(drain, undrain_reverses_at_every_step) {
  for (int step = 0; step < 3; ++step) {
    fake_workers w;
    drain_control d(w.hooks());
    const auto t0 = drain_control::clock::time_point{} + 1000s;
    EXPECT_EQ(d.undrain(t0), "not draining");
    w.open = 1;
    d.begin("api", false, {.grace_ms = 100, .timeout_ms = 100}, t0);
    if (step >= 1) d.tick(t0 + 100ms), w.done = 1;  // refusing
    if (step >= 2) d.tick(t0 + 300ms);              // resetting
    EXPECT_EQ(d.undrain(t0 + 400ms), "") << "step " << step;
    EXPECT_EQ(w.phase, 0);
    EXPECT_FALSE(d.draining());
    EXPECT_EQ(d.counters().undrains, 1u);
  }
}

TEST(admin_query, param_decoding) {
  struct row {
    const char *q, *key, *want;
  } rows[] = {
      {"pool=gw&backend=10.0.0.1:80", "backend", "10.0.0.1:80"},
      {"pool=gw&backend=%5B2001%3Adb8%3A%3A1%5D%3A80", "backend", "[2001:db8::1]:80"},
      {"exit", "exit", "1"},
      {"exit=1&exit=0", "exit", "1"},
      {"a=%zz", "a", ""},
      {"a=%4", "a", ""},
      {"a=%", "a", ""},
      {"a=%0a", "a", ""},  // control bytes are refused
      {"b=1", "a", ""},
      {"", "a", ""},
      {"aa=1", "a", ""},
  };
  for (const auto& r : rows) EXPECT_EQ(query_param(r.q, r.key), r.want) << r.q;
}

}  // namespace
}  // namespace edge
