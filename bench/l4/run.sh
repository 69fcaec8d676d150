#!/bin/sh
# L4 load-balancing bench report: the in-process pipeline (bench/l4/lb_bench.cc) and, in the same
# run and on the same core, DPDK testpmd forwarding on a net_ring vdev in 5tswap mode (swaps MACs,
# IP addresses and ports: the header work closest to NAT, without tables or checksums) as the
# bound. Usage: bench/l4/run.sh [build-dir]   env: CORE (default 1), SECS per scenario (default 2)
set -eu
build=${1:-build}
core=${CORE:-1}
secs=${SECS:-2}
main_core=0
[ "$core" = 0 ] && main_core=1
bench=$build/bench/l4/l4_lb_bench
if [ ! -x "$bench" ]; then
  echo "missing $bench: ninja -C $build bench/l4/l4_lb_bench" >&2
  exit 1
fi
if ! command -v dpdk-testpmd >/dev/null; then
  echo "dpdk-testpmd missing: apt-get install dpdk-dev" >&2
  exit 1
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# testpmd first and last, so contention from other processes is sampled around our run.
run_testpmd() {
  timeout -s INT $((secs + 4)) dpdk-testpmd -l "$main_core,$core" --no-huge -m 512 --no-pci \
    --no-shconf --no-telemetry --file-prefix "lbbench$$" --vdev=net_ring0 -- \
    --forward-mode=5tswap --tx-first --stats-period 1 --nb-cores=1 --total-num-mbufs=4096 \
    >>"$out/testpmd.txt" 2>&1 </dev/null || true
}
run_testpmd
taskset -c "$core" "$bench" --seconds "$secs" --core "$core" >"$out/cold.txt"
taskset -c "$core" "$bench" --seconds "$secs" --core "$core" --flows 1024 >"$out/hot.txt"
run_testpmd

# Median of the non-zero per-second Rx-pps samples.
tp=$(grep -o 'Rx-pps: *[0-9]*' "$out/testpmd.txt" | awk '$2 > 0 {print $2}' | sort -n |
  awk '{a[NR] = $1} END {if (NR == 0) print 0; else print a[int((NR + 1) / 2)]}')
echo "testpmd 5tswap on net_ring0, lcore $core: $(awk -v p="$tp" 'BEGIN {printf "%.2f", p / 1e6}') Mpps"
echo "(mean = wall clock over the run, as testpmd's figure; median = typical burst, preemption excluded)"
for set in cold hot; do
  if [ "$set" = cold ]; then echo "-- 65536 flows (connection table working set beyond L2)"; else echo "-- 1024 flows (hot cache)"; fi
  printf '%-14s %9s %9s %11s %11s %14s\n' scenario mean_ns mean_Mpps median_ns median_Mpps ratio_vs_testpmd
  awk -v tp="$tp" '{
    for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    r = tp > 0 ? v["mean_mpps"] / (tp / 1e6) : 0
    printf "%-14s %9.1f %9.2f %11.1f %11.2f %14.3f\n", v["scenario"], v["mean_ns"], v["mean_mpps"], v["median_ns"], v["median_mpps"], r
  }' "$out/$set.txt"
done
echo "aim: 10 Mpps per core (100 ns/packet) in-process"
