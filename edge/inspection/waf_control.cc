#include "waf_control.hh"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "rules/limits_file.hh"
#include "rules/loader.hh"

namespace edge {

namespace {

constexpr uint32_t watch_mask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE |
                                IN_CREATE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

waf_control::waf_control(waf_control_config cfg, publish_fn publish)
    : cfg_(std::move(cfg)), publish_(std::move(publish)) {}

common::result<std::unique_ptr<waf_control>> waf_control::create(waf_control_config cfg,
                                                                 publish_fn publish) {
  if (cfg.rules_dir.empty()) return common::fail("waf: rules_dir is empty");
  if (!publish) return common::fail("waf: no publish callback");
  std::unique_ptr<waf_control> c(new waf_control(std::move(cfg), std::move(publish)));
  // The watch exists before the first compile, so an edit made between create() and
  // start_watching() waits in the inotify queue instead of being missed.
  if (auto w = c->open_watch(); !w) return common::unexpected(w.error());
  auto gen = c->reload();
  if (!gen) return common::unexpected(gen.error());
  return c;
}

waf_control::~waf_control() {
  stop();
}

common::result<std::shared_ptr<waf_rules_snapshot>> waf_control::build() {
  auto snap = std::make_shared<waf_rules_snapshot>();
  if (cfg_.compile_rules) {
    waf::compile_options opts{.cache_dir = cfg_.cache_dir};
    auto rs = rules::compile_rules_dir(cfg_.rules_dir, opts);
    if (!rs) return common::unexpected(rs.error());
    snap->rules = *rs;
  }
  auto lc = rules::load_limits_dir(cfg_.rules_dir);
  if (!lc) return common::unexpected(lc.error());
  if (cfg_.check_limits)
    if (auto r = cfg_.check_limits(*lc); !r) return common::unexpected(r.error());
  snap->limit_files = lc->files;
  if (cfg_.limit_registry != nullptr) {
    auto ls = limits::limit_set::build(*lc, *cfg_.limit_registry);
    if (!ls) return common::unexpected(ls.error());
    snap->limits = std::move(*ls);
  }
  if (!snap->rules) return snap;
  for (const auto& s : cfg_.services) {
    common::result<waf::policy> p = s.policy_file.empty() ? rules::parse_policy(s.node, s.where)
                                                          : rules::load_policy_file(s.policy_file);
    if (!p) return common::unexpected(p.error());
    auto bp = waf::bound_policy::bind(snap->rules, std::move(*p));
    if (!bp) {
      auto e = bp.error();
      e.message = "service " + s.service + ": " + e.message;
      if (e.where.empty()) e.where = s.policy_file.empty() ? s.where : s.policy_file;
      return common::unexpected(std::move(e));
    }
    snap->policies[s.service] = std::move(*bp);
  }
  return snap;
}

common::result<uint64_t> waf_control::reload() {
  std::lock_guard rl(reload_mu_);
  auto t0 = std::chrono::steady_clock::now();
  auto snap = build();
  double ms = ms_since(t0);
  if (!snap) {
    std::string msg = snap.error().str();
    {
      std::lock_guard lk(mu_);
      ++metrics_.reloads_failed;
      metrics_.last_compile_ms = ms;
      metrics_.compile_ms_total += ms;
      metrics_.last_from_cache = false;
      metrics_.last_error = msg;
    }
    if (auto cur = current())
      spdlog::error("waf: rules reload failed, generation {} keeps serving: {}", cur->generation,
                    msg);
    else
      spdlog::error("waf: rules load failed: {}", msg);
    return common::unexpected(snap.error());
  }
  auto prev = current();
  auto& s = **snap;
  s.generation = prev ? prev->generation + 1 : 1;
  s.same_rules = prev && (prev->rules && s.rules ? prev->rules->hash() == s.rules->hash()
                                                 : prev->rules == s.rules);
  static const waf::compile_stats no_rules{};  // limits only (compile_rules false)
  const auto& cs = s.rules ? s.rules->stats() : no_rules;
  const size_t n_rules = s.rules ? s.rules->rules().size() : 0;
  {
    std::lock_guard lk(mu_);
    current_ = *snap;
    ++metrics_.reloads_ok;
    metrics_.last_compile_ms = ms;
    metrics_.compile_ms_total += ms;
    metrics_.last_from_cache = cs.from_cache;
    metrics_.cache_rejected += cs.cache_rejected.empty() ? 0 : 1;
    metrics_.cache_store_failed += cs.cache_error.empty() ? 0 : 1;
    metrics_.rules = n_rules;
    metrics_.expressions = cs.expressions;
    metrics_.generation = s.generation;
    metrics_.last_error.clear();
  }
  if (!cs.cache_rejected.empty())
    spdlog::warn("waf: database cache entry ignored and rebuilt: {}", cs.cache_rejected);
  if (!cs.cache_error.empty()) spdlog::warn("waf: database cache not written: {}", cs.cache_error);
  spdlog::info(
      "waf: rules generation {} from {}: {} rules, {} expressions, {} limits from {} file(s), "
      "{:.1f} ms{}",
      s.generation, cfg_.rules_dir, n_rules, cs.expressions, s.limits ? s.limits->limit_count() : 0,
      s.limit_files, ms, cs.from_cache ? " (cache)" : "");
  publish_(*snap);
  // The whole reload as the data path sees it: compile, bind and the appliance's RCU publish.
  const double total = ms_since(t0);
  {
    std::lock_guard lk(mu_);
    metrics_.last_reload_ms = total;
    metrics_.reload_ms_total += total;
  }
  return s.generation;
}

std::shared_ptr<const waf_rules_snapshot> waf_control::current() const {
  std::lock_guard lk(mu_);
  return current_;
}

waf_control_metrics waf_control::metrics() const {
  std::lock_guard lk(mu_);
  return metrics_;
}

common::result<void> waf_control::open_watch() {
  inotify_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_fd_ < 0) return common::fail(std::string("inotify_init1: ") + std::strerror(errno));
  wd_ = inotify_add_watch(inotify_fd_, cfg_.rules_dir.c_str(), watch_mask);
  if (wd_ < 0)
    return common::fail(std::string("cannot watch the rules directory: ") + std::strerror(errno),
                        cfg_.rules_dir);
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) return common::fail(std::string("eventfd: ") + std::strerror(errno));
  return {};
}

common::result<void> waf_control::start_watching() {
  if (watcher_.joinable()) return {};
  if (inotify_fd_ < 0 || wake_fd_ < 0) return common::fail("waf: rules watcher already stopped");
  watcher_ = std::thread([this] { watch_loop(); });
  return {};
}

void waf_control::stop() {
  if (watcher_.joinable()) {
    uint64_t one = 1;
    if (write(wake_fd_, &one, sizeof one) < 0) spdlog::warn("waf: cannot wake the rules watcher");
    watcher_.join();
  }
  if (inotify_fd_ >= 0) close(inotify_fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
  inotify_fd_ = wake_fd_ = -1;
}

// Editors and `kubectl` updates touch several files in a burst (ConfigMaps swap a `..data`
// symlink), so events only arm a deadline; the reload runs once the directory has been quiet for
// `debounce`. When the directory itself goes away (moved/deleted), the watch is re-added on every
// tick until it is back, and then a reload runs.
void waf_control::watch_loop() {
  using clock = std::chrono::steady_clock;
  bool pending = false, lost = false;
  clock::time_point deadline{};
  alignas(inotify_event) std::array<char, 8192> buf;
  for (;;) {
    int timeout = -1;
    if (pending || lost) {
      auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
      timeout = static_cast<int>(std::max<long>(0, left));
    }
    std::array<pollfd, 2> fds{pollfd{inotify_fd_, POLLIN, 0}, pollfd{wake_fd_, POLLIN, 0}};
    int r = poll(fds.data(), fds.size(), timeout);
    if (r < 0 && errno != EINTR) {
      spdlog::error("waf: rules watcher poll: {}", std::strerror(errno));
      return;
    }
    if (fds[1].revents & POLLIN) return;
    if (r > 0 && (fds[0].revents & POLLIN)) {
      for (;;) {
        ssize_t n = read(inotify_fd_, buf.data(), buf.size());
        if (n <= 0) break;
        for (ssize_t off = 0; off < n;) {
          auto* ev = reinterpret_cast<const inotify_event*>(buf.data() + off);
          off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
          {
            std::lock_guard lk(mu_);
            ++metrics_.watch_events;
          }
          if (ev->wd != wd_ && ev->wd != -1)
            continue;  // a directory we no longer watch (-1: queue overflow)
          if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) lost = true;
          pending = true;
          deadline = clock::now() + cfg_.debounce;
        }
      }
      continue;
    }
    if (clock::now() < deadline) continue;
    if (lost) {
      // The old watch may still follow the moved directory: drop it so its events stop counting.
      inotify_rm_watch(inotify_fd_, wd_);
      wd_ = inotify_add_watch(inotify_fd_, cfg_.rules_dir.c_str(), watch_mask);
      if (wd_ < 0) {
        deadline = clock::now() + cfg_.debounce;  // not back yet; the old rules keep serving
        continue;
      }
      lost = false;
      pending = true;
    }
    if (pending) {
      pending = false;
      (void)reload();  // failures are counted and logged inside
    }
  }
}

}  // namespace edge
