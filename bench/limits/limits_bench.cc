// Limiter bench (see bench/limits/meson.build). Prints one line per figure; timing is noisy on
// shared machines, so each figure says what it measured.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "limits/table.hh"

namespace {

using clk = std::chrono::steady_clock;
using limits::gcra_params;
using limits::keyed_table;
using limits::units_per_ns;
using limits::units_per_s;

double secs_since(clk::time_point t0) {
  return std::chrono::duration<double>(clk::now() - t0).count();
}

long max_rss_kb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

uint64_t hash_of(uint64_t i) {
  char b[8];
  for (int k = 0; k < 8; ++k) b[k] = static_cast<char>(i >> (8 * k));
  return limits::key_hash(42, {b, 8});
}

}  // namespace

int main(int argc, char** argv) {
  const size_t keys = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 10'000'000;

  // 1. Checks per second on one core: one hot key; then keys spread over a 1M-key table.
  {
    keyed_table t(1 << 20);
    const auto p = gcra_params::of(1'000'000, 1000);
    const uint64_t h = hash_of(1);
    const size_t n = 20'000'000;
    uint64_t now = units_per_s, passed = 0;
    auto t0 = clk::now();
    for (size_t i = 0; i < n; ++i) passed += !t.gcra(h, now += 50 * units_per_ns, 1, p).limited;
    const double s = secs_since(t0);
    std::printf("gcra one key:        %.1f M checks/s on one core (%zu checks, %llu passed)\n",
                n / s / 1e6, n, static_cast<unsigned long long>(passed));
    std::vector<uint64_t> hs(1 << 20);
    for (size_t i = 0; i < hs.size(); ++i) hs[i] = hash_of(i + 100);
    t0 = clk::now();
    for (size_t i = 0; i < n; ++i)
      passed += !t.gcra(hs[i & (hs.size() - 1)], now += 50 * units_per_ns, 1, p).limited;
    const double s2 = secs_since(t0);
    std::printf("gcra 1M keys:        %.1f M checks/s on one core (table %zu MiB, cache-missing)\n",
                n / s2 / 1e6, t.bytes() >> 20);
  }

  // 2. Accuracy under load: 4 threads share one key for 2 s of real time at 50,000/s.
  {
    keyed_table t(1024);
    const uint64_t rate = 50'000, burst = 5'000;
    const auto p = gcra_params::of(rate, burst);
    const uint64_t h = hash_of(7);
    const auto start = clk::now();
    auto units = [&] {
      return static_cast<uint64_t>(
                 std::chrono::duration_cast<std::chrono::nanoseconds>(clk::now() - start).count()) *
                 units_per_ns +
             units_per_s;
    };
    std::vector<std::thread> th;
    std::vector<uint64_t> pass(4), tried(4);
    for (int i = 0; i < 4; ++i)
      th.emplace_back([&, i] {
        for (uint64_t now = units(); now < 3 * units_per_s; now = units()) {
          ++tried[i];
          pass[i] += !t.gcra(h, now, 1, p).limited;
        }
      });
    for (auto& x : th) x.join();
    uint64_t sum = 0, all = 0;
    for (int i = 0; i < 4; ++i) sum += pass[i], all += tried[i];
    const double want = rate * 2.0 + burst;
    std::printf("accuracy, 4 threads: %llu passed of %llu checks in 2 s, want %.0f: %+.2f %%\n",
                static_cast<unsigned long long>(sum), static_cast<unsigned long long>(all), want,
                (sum - want) / want * 100);
  }

  // 3. Memory for `keys` keys: a table of 1.25 × keys slots (a key hashes to one bucket of 4, so a
  // full table keeps ~80 % of what it is offered), offered that many distinct keys.
  {
    const long rss0 = max_rss_kb();
    keyed_table t(keys + keys / 4);
    const auto p = gcra_params::of(10, 10);
    auto t0 = clk::now();
    for (size_t i = 0; i < keys; ++i) t.gcra(hash_of(i + 1'000'000'000ull), units_per_s, 1, p);
    const double s = secs_since(t0);
    const size_t used = t.used();
    std::printf(
        "memory, %zu keys:    table %zu MiB for %zu slots (16 B each), %zu keys held (%.1f %%): "
        "%.1f B per key "
        "held; RSS +%ld MiB; insert %.1f M keys/s\n",
        keys, t.bytes() >> 20, t.capacity(), used, 100.0 * used / keys, double(t.bytes()) / used,
        (max_rss_kb() - rss0) >> 10, keys / s / 1e6);
  }
  return 0;
}
