#!/usr/bin/env bash
# The test command (CI runs it through .ci/run on a clean clone). Needs root (network namespaces
# for the e2e suite).
#
#   tests/run.sh                 everything, stage by stage, each timed:
#                                  format   every C++ file as clang-format (.clang-format) leaves it
#                                  build    install what is missing, build ./build (gcc)
#                                  test     every meson suite on ./build (unit, e2e, fuzz replay, ...)
#                                  asan     ./build-fuzz (clang, ASan+UBSan, libFuzzer coverage):
#                                           the unit and e2e suites (only their programs built)
#                                  bench    bench/run --quick on ./build: every benchmark briefly,
#                                           checked for well-formed figures (no timing threshold)
#                                  fuzz     build-fuzz again: each fuzz target fuzzed FUZZ_SECONDS (60)
#                                           on 2 jobs, then its corpus replayed (--suite fuzz)
#                                           (one sanitizer tree for both: the asan stage took 1803 s
#                                           with a gcc ASan tree, 1086 s with this one, on 2 cores;
#                                           the fuzz targets reuse its objects)
#   tests/run.sh --stage S ...   only the named stages (build is implied by test, bench and asan)
#   tests/run.sh ARGS...         just `meson test ARGS` on ./build, e.g. `tests/run.sh --suite e2e`
#
# A test that reports SKIP fails the run: every suite must run on the CI machine (a GoogleTest
# case that calls GTEST_SKIP counts as a skip too). Known third-party leaks are suppressed in
# tests/lsan.supp (each entry says why).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "tests/run.sh needs root (network namespaces, DPDK)"; exit 1; fi

stages=()
if (($# == 0)); then
  stages=(format build test asan bench fuzz)
elif [ "$1" = --stage ]; then
  shift
  while (($#)); do stages+=("$1"); shift; done
fi

# Summary line and skip check over one build's meson test log; non-zero when anything failed or
# skipped.
summarise() {
  /usr/bin/python3 - "$1/meson-logs/testlog.json" <<'PY'
import json, re, sys
counts = {}
skipped, failed = [], []
with open(sys.argv[1]) as f:
    for line in f:
        r = json.loads(line)
        counts[r["result"]] = counts.get(r["result"], 0) + 1
        if r["result"] == "SKIP":
            skipped.append(r["name"])
        elif r["result"] in ("FAIL", "TIMEOUT", "ERROR", "UNEXPECTEDPASS"):
            failed.append(r["name"])
        for m in re.finditer(r"^\[  SKIPPED \] (\S+)", r.get("stdout") or "", re.M):
            skipped.append(f"{r['name']}: {m.group(1)}")
ok = counts.get("OK", 0) + counts.get("EXPECTEDFAIL", 0)
print(f"{ok} passed, {len(failed)} failed, {len(skipped)} skipped")
for s in skipped:
    print(f"SKIP (not allowed: every suite must run here): {s}")
sys.exit(1 if failed or skipped else 0)
PY
}

declare -A took
stage_start=0
begin() { stage_start=$SECONDS; echo "==== stage $1 ($(date +%T))"; }
end() { took[$1]=$((SECONDS - stage_start)); echo "==== stage $1: $2 after ${took[$1]} s"; }

if ((${#stages[@]} == 0)); then  # a part, for developers: meson test ARGS on ./build
  deploy/install-deps.sh
  deploy/build.sh
  rc=0
  meson test -C build --print-errorlogs --num-processes 2 "$@" || rc=$?
  summarise build || rc=1
  exit $rc
fi

want() { local s; for s in "${stages[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }
rc=0
if want format; then
  begin format
  deploy/install-deps.sh
  r=0
  # Tracked files in a checkout; every C++ file under the tree otherwise (a tarball).
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    mapfile -t cxx < <(git ls-files '*.cc' '*.hh' '*.h')
  else
    mapfile -t cxx < <(find . -path './build*' -prune -o -path ./subprojects -prune -o \
      \( -name '*.cc' -o -name '*.hh' -o -name '*.h' \) -print)
  fi
  # Debian 12's clang-format is 14; another version formats some constructs differently.
  cf=clang-format-14
  command -v "$cf" >/dev/null || cf=clang-format
  out=$("$cf" --dry-run --Werror "${cxx[@]}" 2>&1) || r=1
  if ((r != 0)); then
    places=$(grep -E '^[^ ]+:[0-9]+:[0-9]+: (error|warning)' <<<"$out" | cut -d: -f1 | sort |
      uniq -c | sed 's/^ */  not clang-formatted: /; s/ \([^ ]*\)$/ places in \1/' || true)
    # Not a formatting difference (a bad .clang-format, a missing file): show what it said.
    if [ -n "$places" ]; then head -40 <<<"$places"; else head -20 <<<"$out"; fi
  fi
  ((r == 0)) || { echo "  fix: $cf -i FILE..."; rc=1; }
  end format "$( ((r == 0)) && echo ok || echo FAILED)"
fi

if want build || want test || want bench || want asan; then
  begin build
  deploy/install-deps.sh
  deploy/build.sh
  end build ok
fi

# The sanitizer tree (build-fuzz: clang, ASan+UBSan, libFuzzer coverage): the unit and e2e
# programs (what the asan stage runs; not the benches or the differential harness) and, when the
# fuzz stage runs too, the fuzz targets, which share those objects.
san_build() {  # $1: 1 to build the fuzz targets too
  bash tests/fuzz/run.sh --setup
  ninja -C build-fuzz build.ninja >/dev/null  # a reused build dir: its test list up to date
  local need
  mapfile -t need < <(meson introspect build-fuzz --tests --targets | /usr/bin/python3 -c '
import json, os, sys
fuzz = sys.argv[1] == "1"
j = json.load(sys.stdin)
path = {t["id"]: f for t in j["targets"] for f in t["filename"]}
ids = {d for t in j["tests"] if {"edge:unit", "edge:e2e"} & set(t["suite"]) for d in t["depends"]}
out = {os.path.relpath(path[i], "build-fuzz") for i in ids if i in path}
if fuzz:
    out |= {os.path.relpath(f, "build-fuzz") for t in j["targets"] if t["name"].startswith("fuzz_")
            for f in t["filename"]}
print("\n".join(sorted(out)))' "$1")
  ((${#need[@]} > 0)) || { echo "no test targets found in build-fuzz"; return 1; }
  ninja -C build-fuzz "${need[@]}"
}
san_fuzz=0
want fuzz && san_fuzz=1
# With the test stage, that build runs beside it, in a session of its own whose scheduler
# autogroup is at nice 19 (a nice-19 process in CI's own autogroup would still take that group's
# whole share from test processes that run in sessions of their own, as nginx and edged do): the
# e2e suites leave the CPUs idle most of the time, and the build takes only what they leave.
san_pid=
if want asan && want test; then
  export -f san_build
  setsid -w bash -c 'echo 19 >/proc/$$/autogroup 2>/dev/null; renice -n 19 -p $$ >/dev/null
                  san_build "$1"' _ "$san_fuzz" >build/san-build.log 2>&1 </dev/null &
  san_pid=$!
fi

if want test; then
  begin test
  r=0
  meson test -C build --print-errorlogs --num-processes 2 || r=$?
  summarise build || r=1
  ((r == 0)) || rc=1
  end test "$( ((r == 0)) && echo ok || echo FAILED)"
fi


if want asan; then
  begin asan
  r=0
  if [ -n "$san_pid" ]; then
    wait "$san_pid" || r=$?
    echo "  (built beside the test stage, at nice 19: build/san-build.log)"
  else
    san_build "$san_fuzz" >build/san-build.log 2>&1 || r=$?
  fi
  ((r == 0)) || { echo "asan: the sanitizer build failed:"; tail -30 build/san-build.log; }
  if ((r == 0)); then
    ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" \
    LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0" \
    UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
      meson test -C build-fuzz --print-errorlogs --num-processes 2 --suite unit --suite e2e \
        --no-rebuild --timeout-multiplier 3 || r=$?
    summarise build-fuzz || r=1
  fi
  ((r == 0)) || rc=1
  end asan "$( ((r == 0)) && echo ok || echo FAILED)"
fi

if want bench; then
  begin bench
  r=0
  bench/run --quick --out build/bench-results || r=$?
  ((r == 0)) || rc=1
  end bench "$( ((r == 0)) && echo ok || echo FAILED)"
fi

if want fuzz; then
  begin fuzz
  r=0
  bash tests/fuzz/run.sh "${FUZZ_SECONDS:-60}" --jobs 2 || r=$?
  meson test -C build-fuzz --print-errorlogs --num-processes 2 --suite fuzz || r=$?
  summarise build-fuzz || r=1
  ((r == 0)) || rc=1
  end fuzz "$( ((r == 0)) && echo ok || echo FAILED)"
fi

echo "==== stage times (s):"
for s in "${stages[@]}"; do [ -n "${took[$s]:-}" ] && echo "  $s ${took[$s]}"; done
echo "  total $SECONDS"
exit $rc
