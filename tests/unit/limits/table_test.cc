// keyed_table: GCRA accuracy (virtual time, and real threads sharing one key), retry-after,
// bytes per key, eviction order, concurrency counts.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "limits/table.hh"

namespace {

using limits::gcra_params;
using limits::keyed_table;
using limits::units_per_ns;
using limits::units_per_s;

constexpr uint64_t ms = units_per_s / 1000;

TEST(Gcra, BurstThenRate) {
  // rate 1000/s, burst 10: 10 at once, then one per ms.
  keyed_table t(1024);
  const auto p = gcra_params::of(1000, 10);
  const uint64_t h = limits::key_hash(1, "a");
  uint64_t now = 1000 * units_per_s;
  int ok = 0;
  for (int i = 0; i < 50; ++i) ok += !t.gcra(h, now, 1, p).limited;
  EXPECT_EQ(ok, 10);
  const auto v = t.gcra(h, now, 1, p);
  ASSERT_TRUE(v.limited);
  EXPECT_EQ(v.retry_after_ns, 1'000'000u);  // one interval
  now += ms;
  EXPECT_FALSE(t.gcra(h, now, 1, p).limited);
  EXPECT_TRUE(t.gcra(h, now, 1, p).limited);
}

// A burst/rate past ~1.15e9 s wrapped interval * burst below one interval: every request was
// refused. The tolerance saturates instead, so the first requests pass.
TEST(Gcra, HugeBurstOverRateSaturatesInsteadOfWrapping) {
  keyed_table t(64);
  for (const uint64_t burst : {uint64_t{1'152'921'505}, uint64_t{10'000'000'000}}) {
    const auto p = gcra_params::of(1, burst);
    EXPECT_GE(p.tolerance, p.interval) << burst;
    const uint64_t h = limits::key_hash(1, std::to_string(burst));
    const uint64_t now = 1000 * units_per_s;
    for (int i = 0; i < 100; ++i) EXPECT_FALSE(t.gcra(h, now, 1, p).limited) << burst << " " << i;
  }
}

struct accuracy_case {
  const char* name;
  uint64_t rate, burst, offered_per_s;
};

TEST(Gcra, AccuracyOverTenSeconds) {
  // Offered load above the rate for 10 s of virtual time: passed = rate * 10 + burst, within 0.5 %.
  const accuracy_case cases[] = {
      {"100/s offered 1000/s", 100, 1, 1000},
      {"1000/s offered 5000/s", 1000, 10, 5000},
      {"33333/s offered 100000/s", 33333, 100, 100000},
      {"7/s offered 50/s", 7, 3, 50},
  };
  for (const auto& c : cases) {
    keyed_table t(64);
    const auto p = gcra_params::of(c.rate, c.burst);
    const uint64_t h = limits::key_hash(1, c.name);
    const uint64_t step = units_per_s / c.offered_per_s;
    uint64_t passed = 0;
    const uint64_t t0 = 5 * units_per_s;
    for (uint64_t now = t0; now < t0 + 10 * units_per_s; now += step)
      passed += !t.gcra(h, now, 1, p).limited;
    const double want = static_cast<double>(c.rate * 10 + c.burst);
    EXPECT_NEAR(static_cast<double>(passed), want, want * 0.005 + 1) << c.name;
  }
}

TEST(Gcra, BytesCost) {
  // 1 MB/s, burst 64 KB: 1500-byte packets offered at 10 MB/s for 2 s pass 2 MB + 64 KB.
  keyed_table t(64);
  const auto p = gcra_params::of(1'000'000, 65536);
  const uint64_t h = limits::key_hash(1, "b");
  uint64_t bytes = 0;
  const uint64_t step = units_per_s / (10'000'000 / 1500);
  for (uint64_t now = units_per_s; now < 3 * units_per_s; now += step)
    if (!t.gcra(h, now, 1500, p).limited) bytes += 1500;
  EXPECT_NEAR(static_cast<double>(bytes), 2'065'536.0, 2'065'536.0 * 0.005 + 1500);
  // A packet larger than the whole burst never passes.
  EXPECT_TRUE(t.gcra(h, 100 * units_per_s, 70000, p).limited);
}

TEST(Gcra, SharedKeyAcrossThreadsHoldsRate) {
  // Four threads (workers) share one key. Time is a shared virtual clock that every check advances
  // (100,000 checks per second offered, 20 s), so the result does not depend on how this busy test
  // machine schedules the threads; a thread preempted between reading the clock and its CAS checks
  // with a stale time, as a real worker would. The table is shared, so the total passed is the rate
  // whichever thread each check comes from: rate × 20 s + burst, within 5 % (and never above 1 %).
  keyed_table t(1024);
  const uint64_t rate = 5000, burst = 250;
  const auto p = gcra_params::of(rate, burst);
  const uint64_t h = limits::key_hash(1, "shared");
  const uint64_t step = units_per_s / 100000, t0 = units_per_s, span = 20 * units_per_s;
  std::atomic<uint64_t> clock{t0}, passed{0};
  std::atomic<int> ready{0};
  std::vector<uint64_t> per_thread(4), checks(4);
  std::vector<std::thread> th;
  for (int i = 0; i < 4; ++i)
    th.emplace_back([&, i] {
      ++ready;
      while (ready.load() < 4) std::this_thread::yield();  // start together
      uint64_t mine = 0, tried = 0;
      for (uint64_t now = clock.fetch_add(step); now < t0 + span; now = clock.fetch_add(step)) {
        mine += !t.gcra(h, now, 1, p).limited;
        ++tried;
      }
      per_thread[i] = mine;
      checks[i] = tried;
      passed += mine;
    });
  for (auto& x : th) x.join();
  const double want = static_cast<double>(rate * 20 + burst);
  EXPECT_LE(static_cast<double>(passed.load()), want * 1.01);
  EXPECT_GE(static_cast<double>(passed.load()), want * 0.95);
  // A thread that made many checks got some through (1 in 20 passes): the key is one key for all.
  // On a machine with fewer cores than threads a thread may be scheduled only after the others
  // used up the virtual 20 s, and then it made no checks to judge.
  for (int i = 0; i < 4; ++i)
    if (checks[i] >= 2000) {
      EXPECT_GT(per_thread[i], 0u) << "thread " << i << " never passed in " << checks[i];
    }
}

TEST(Table, SixteenBytesPerKey) {
  keyed_table t(1 << 20);
  EXPECT_EQ(t.capacity(), 1u << 20);
  EXPECT_EQ(t.bytes() / t.capacity(), 16u);
  // Offered as many keys as slots, it keeps ~80 % of them (a key hashes to one bucket of 4; a
  // full bucket evicts): ≤ 20 bytes per key held, against the aim of 32.
  const auto p = gcra_params::of(1, 1);
  for (uint64_t k = 1; k <= (1 << 20); ++k)
    t.gcra(limits::key_hash(7, std::to_string(k)), units_per_s, 1, p);
  EXPECT_GT(t.used(), t.capacity() * 3 / 4);
  EXPECT_LE(t.bytes() / t.used(), 21u);
}

TEST(Table, EvictsIdleFirstAndKeepsTheHotKey) {
  // One bucket (4 slots). A key over its limit has the latest arrival time: a flood of new keys
  // evicts the others first, so the offender stays limited.
  keyed_table t(4);
  const auto p = gcra_params::of(1, 1);
  const uint64_t now = 10 * units_per_s;
  const uint64_t hot = limits::key_hash(1, "hot");
  t.gcra(hot, now, 1, p);
  for (int i = 0; i < 5; ++i) t.gcra(hot, now, 1, p);  // limited; TAT stays now + 1 s
  // Newcomers arrive slightly earlier, so their arrival times are just below the hot key's.
  for (int i = 0; i < 100; ++i)
    t.gcra(limits::key_hash(1, "new" + std::to_string(i)), now - 1000, 1, p);
  EXPECT_LE(t.used(), 4u);
  EXPECT_GT(t.evictions(), 90u);
  EXPECT_TRUE(t.gcra(hot, now, 1, p).limited)
      << "the offender was evicted before newer, cheaper keys";
  // An idle key (its TAT passed) is replaced without counting an eviction.
  keyed_table u(4);
  for (int i = 0; i < 4; ++i) u.gcra(limits::key_hash(2, std::to_string(i)), now, 1, p);
  u.gcra(limits::key_hash(2, "late"), now + 2 * units_per_s, 1, p);
  EXPECT_EQ(u.evictions(), 0u);
}

TEST(Table, ConcurrencyCountsAndNeverEvictsHeldKeys) {
  keyed_table t(4);
  const uint64_t a = limits::key_hash(3, "a");
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(t.acquire(a, 3).limited);
  EXPECT_TRUE(t.acquire(a, 3).limited);
  t.release(a);
  EXPECT_FALSE(t.acquire(a, 3).limited);
  EXPECT_EQ(t.value_of(a), 3u);
  // detect-only (force) takes the count and still says limited.
  const auto v = t.acquire(a, 3, true);
  EXPECT_TRUE(v.limited);
  EXPECT_EQ(t.value_of(a), 4u);
  // Fill the other three slots with held keys: a fifth key is not tracked, a held one stays.
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE(t.acquire(limits::key_hash(3, std::to_string(i)), 3).tracked);
  EXPECT_FALSE(t.acquire(limits::key_hash(3, "fifth"), 3).tracked);
  EXPECT_EQ(t.full(), 1u);
  EXPECT_EQ(t.value_of(a), 4u);
  t.release(limits::key_hash(3, "0"));  // its count drops to 0: the slot may be reused
  EXPECT_TRUE(t.acquire(limits::key_hash(3, "fifth"), 3).tracked);
  t.release(limits::key_hash(3, "never"));
  EXPECT_EQ(t.release_misses(), 1u);
}

TEST(Table, ConcurrencyAcrossThreads) {
  // 4 threads acquire and release one key 100,000 times each with max 2: never more than 2 held,
  // and the count returns to 0.
  keyed_table t(64);
  const uint64_t k = limits::key_hash(4, "k");
  std::atomic<bool> over{false};
  std::vector<std::thread> th;
  for (int i = 0; i < 4; ++i)
    th.emplace_back([&] {
      for (int n = 0; n < 100000; ++n)
        if (!t.acquire(k, 2).limited) {
          if (t.value_of(k) > 2) over = true;
          t.release(k);
        }
    });
  for (auto& x : th) x.join();
  EXPECT_FALSE(over.load());
  EXPECT_EQ(t.value_of(k), 0u);
}

}  // namespace
