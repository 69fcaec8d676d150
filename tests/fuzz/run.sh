#!/usr/bin/env bash
# Coverage-guided fuzzing of every target: builds the libFuzzer binaries (clang, ASan+UBSan) into
# build-fuzz/, then fuzzes each target for SECONDS (default 60), one at a time per CPU, starting
# from its committed corpus. New inputs go to build-fuzz/corpus/<target>/ (add --merge to minimise
# them into tests/fuzz/<target>/corpus/); a crash leaves build-fuzz/artifacts/<target>/crash-* and
# makes the script fail. A summary line per target gives executions, coverage (edges) and features.
# The same tree builds the unit and e2e suites (CI's asan stage runs them there); --setup only
# configures it.
#   tests/fuzz/run.sh [SECONDS] [--merge] [--jobs N] [target ...]
#   tests/fuzz/run.sh --setup
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=60 merge=0 jobs=$(nproc) targets=() setup_only=0
while (($#)); do
  case "$1" in
    --setup) setup_only=1 ;;
    --merge) merge=1 ;;
    --jobs) jobs="$2"; shift ;;
    [0-9]*) secs="$1" ;;
    *) targets+=("$1") ;;
  esac
  shift
done
if [ ! -f build-fuzz/build.ninja ]; then
  CC=clang CXX=clang++ meson setup build-fuzz -Dfuzzing=true -Db_sanitize=address,undefined \
    -Db_lundef=false -Dbuildtype=debugoptimized >/dev/null
fi
((setup_only == 0)) || exit 0
if ((${#targets[@]} == 0)); then
  for d in tests/fuzz/*/; do
    t=$(basename "$d")
    [ -f "$d/meson.build" ] && targets+=("$t")
  done
fi
# Only the fuzz binaries (not edged and the tools): a clean CI clone builds this tree a third time.
meson compile -C build-fuzz "${targets[@]/#/fuzz_}" >/dev/null
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:symbolize=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
fuzz_one() {
  local t=$1 bin="build-fuzz/tests/fuzz/$1/fuzz_$1" src="tests/fuzz/$1"
  local out="build-fuzz/corpus/$t" art="build-fuzz/artifacts/$t" log="build-fuzz/logs/$t.log"
  mkdir -p "$out" "$art" "$(dirname "$log")"
  local extra=()
  [ -f "$src/options" ] && read -r -a extra < "$src/options"
  [ -f "$src/dict" ] && extra+=("-dict=$src/dict")
  local rc=0 before
  before=$(ls "$out" | wc -l)
  "$bin" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$art/" "${extra[@]}" \
    "$out" "$src/corpus" >"$log" 2>&1 || rc=$?
  local execs edges ft
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || echo 0)
  edges=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo 0)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo 0)
  if ((rc != 0)); then
    echo "FAIL $t: exit $rc after ${execs:-?} executions; $(ls "$art" | head -3 | tr '\n' ' ') (log $log)"
    grep -m1 -A12 'ERROR: \|runtime error' "$log" || tail -20 "$log"
    return 1
  fi
  echo "ok   $t: ${secs}s, $execs executions, cov $edges edges, ft $ft, $(($(ls "$out" | wc -l) - before)) new inputs"
  if ((merge)); then
    "$bin" -merge=1 "$src/corpus" "$out" >>"$log" 2>&1
  fi
}
export -f fuzz_one
export secs merge
rc=0
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'fuzz_one {}' || rc=$?
exit $rc
