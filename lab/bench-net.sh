#!/bin/bash
# The guest half of `lab.sh bench net` (runs chrooted in a No-IOMMU guest): the io-forward loop between
# the two virtio-net ports, DPDK 22.11 testpmd and this project's forwarder (vfio net fwd), for the same time.
# Both start with a tx-first burst of 32 per port and forward in bursts of 32. The host's load shifts
# from second to second (QEMU's TCG and other guests share its cores), so the two alternate for
# VFIO_BENCH_ROUNDS short rounds (default 5 of VFIO_BENCH_SECONDS=5 s) and each side's median is compared:
# a round that a burst of host load hit moves a median less than a mean. Each round is printed, and each
# side's spread ((max - min) / median) says how much to trust the ratio. Each side's rate is its steady
# state: both ports' packets per second after the first second. The bench fails (exit 1, no ratio line) when a
# round of either side failed or measured nothing, or one direction's rate differs from the other's by more than 20%
# (a stalled direction would otherwise hide in the total); each round prints both directions.
# Writes $VFIO_LAB_OUT/{dpdk,ours}-N.log, ours-N.json (vfio's report) and $VFIO_LAB_OUT/result, whose last line is
# "net-ioforward ours=<Mpps> dpdk=<Mpps> ratio=<ours/dpdk>".
set -u
SECS="${VFIO_BENCH_SECONDS:-5}"
ROUNDS="${VFIO_BENCH_ROUNDS:-5}"
OUT="$VFIO_LAB_OUT"
PMDS=/usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0
# vfio, json_number, bind_vfio, median, spread, testpmd_timed, balanced, testpmd_rates and fwd_rates.
. "$(dirname "${BASH_SOURCE[0]}")/bench-vfio.sh"

bind_vfio "$VFIO_LAB_NET0"
bind_vfio "$VFIO_LAB_NET1"

run_dpdk() { # log -> "total port0-tx port1-tx" in Mpps
  # testpmd prints both ports' throughput every second (testpmd_timed: SECS seconds from its first report).
  # --in-memory leaves no hugepage files behind for the next run.
  testpmd_timed "$1" 120 -l 0-1 -n 1 --iova-mode=pa --in-memory \
    -a "$VFIO_LAB_NET0" -a "$VFIO_LAB_NET1" -d "$PMDS/librte_net_virtio.so" -d "$PMDS/librte_mempool_ring.so" \
    -- --forward-mode=io --tx-first --nb-cores=1 --burst=32 --total-num-mbufs=8192 --stats-period=1
  testpmd_rates "$1"
}

run_ours() { # log -> "total aToB bToA" in Mpps
  # The report (--json) goes to ours-N.json, the logs to ours-N.log; the rate is both ports' after the first second.
  # vfio net fwd itself exits non-zero when a direction forwarded nothing.
  local json="${1%.log}.json"
  vfio net fwd "$VFIO_LAB_NET0" "$VFIO_LAB_NET1" --seconds "$SECS" --warmup 1 --burst 32 --unsafe-noiommu --json \
    > "$json" 2> "$1" || return 1
  fwd_rates "$json"
}

dpdk_all="" ours_all=""
for r in $(seq 1 "$ROUNDS"); do
  # A round in which either side failed or reported no rate fails the bench: a median over the other rounds
  # would still print a ratio.
  x="$(run_dpdk "$OUT/dpdk-$r.log")" || { echo "bench: round $r: dpdk-testpmd reported no rate (see $OUT/dpdk-$r.log)" >&2; exit 1; }
  read -r d d0 d1 <<< "$x"
  balanced "$d0" "$d1" || { echo "bench: round $r: dpdk-testpmd's directions differ by more than 20% (port 0 tx $d0, port 1 tx $d1 Mpps)" >&2; exit 1; }
  echo "bench: round $r dpdk-testpmd ${d} Mpps (port 0 tx $d0, port 1 tx $d1)" >&2
  x="$(run_ours "$OUT/ours-$r.log")" || { echo "bench: round $r: vfio net fwd failed or reported no rate (see $OUT/ours-$r.log)" >&2; exit 1; }
  read -r o o0 o1 <<< "$x"
  balanced "$o0" "$o1" || { echo "bench: round $r: vfio net fwd's directions differ by more than 20% (a->b $o0, b->a $o1 Mpps)" >&2; exit 1; }
  echo "bench: round $r vfio net fwd ${o} Mpps (a->b $o0, b->a $o1)" >&2
  dpdk_all+=" $d" ours_all+=" $o"
done
dpdk="$(median $dpdk_all)" ours="$(median $ours_all)"
{
  echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (guest); rounds: $ROUNDS x $SECS s each side, alternating"
  echo "dpdk-testpmd io-forward, per round (Mpps, both ports, burst 32, tx-first):$dpdk_all"
  echo "vfio net fwd io-forward, per round (Mpps, both ports, burst 32, tx-first):$ours_all"
  echo "dpdk median $dpdk Mpps, spread $(spread $dpdk_all); ours median $ours Mpps, spread $(spread $ours_all)"
  awk -v o="$ours" -v d="$dpdk" 'BEGIN { printf "net-ioforward ours=%s dpdk=%s ratio=%.3f\n", o, d, (d > 0 ? o / d : 0) }'
} > "$OUT/result"
[ "$ours" != 0.0000 ] && [ "$dpdk" != 0.0000 ]
