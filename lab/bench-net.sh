#!/bin/bash
# The guest half of `lab.sh bench net` (runs chrooted in a No-IOMMU guest): the io-forward loop between
# the two virtio-net ports, DPDK 22.11 testpmd and this project's forwarder (vfio net fwd), for the same time.
# Both start with VFIO_BENCH_TX_FIRST (default 8) tx-first bursts of 32 per port, the 256 entries of QEMU's virtio-net
# rings, so the rings stay full (testpmd `start tx_first 8`, vfio net fwd --tx-first 8), take their buffers from a pool
# of the same size (testpmd --total-num-mbufs, vfio --pool: 8192) and forward in bursts of 32. The host's load shifts
# from second to second (QEMU's TCG and other guests share its cores), so the two alternate for
# VFIO_BENCH_ROUNDS short rounds (default 5 of VFIO_BENCH_SECONDS=5 s) and each side's median is compared:
# a round that a burst of host load hit moves a median less than a mean. Each round is printed, and each
# side's spread ((max - min) / median) says how much to trust the ratio. Each side's rate is its steady
# state: both ports' packets per second after the first second. The bench fails (exit 1, no ratio line) when a
# round of either side failed or measured nothing, or one direction's rate differs from the other's by more than 20%
# (a stalled direction would otherwise hide in the total); each round prints both directions.
# After the timed rounds, one short untimed pass of each side counts the notifications that explain the ratio: QEMU's
# virtio_queue_notify (a driver's kick: a trap into QEMU under TCG) and virtio_notify (an interrupt QEMU raises) trace
# events, switched on through QMP for the pass only and counted for the two NICs (the devices whose status the
# drivers set, virtio_set_status, in that pass), per packet sent: "kicks_per_packet ours=N dpdk=N". Our driver's own
# doorbell count is printed beside QEMU's as a cross-check.
# Writes $VFIO_LAB_OUT/{dpdk,ours}-N.log, ours-N.json (vfio's report) and $VFIO_LAB_OUT/result, whose last line is
# "net-ioforward ours=<Mpps> dpdk=<Mpps> ratio=<ours/dpdk>".
set -u
SECS="${VFIO_BENCH_SECONDS:-5}"
ROUNDS="${VFIO_BENCH_ROUNDS:-5}"
TXFIRST="${VFIO_BENCH_TX_FIRST:-8}"
MBUFS=8192
COUNT_SECS=2
QLOG=/run/vfio-lab/qemu.log
OUT="$VFIO_LAB_OUT"
PMDS=/usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0
# vfio, json_number, bind_vfio, median, spread, testpmd_timed, balanced, testpmd_rates and fwd_rates.
. "$(dirname "${BASH_SOURCE[0]}")/bench-vfio.sh"

bind_vfio "$VFIO_LAB_NET0"
bind_vfio "$VFIO_LAB_NET1"

run_dpdk() { # log -> "total port0-tx port1-tx" in Mpps
  # testpmd reports both ports' throughput once a second (testpmd_filled: SECS seconds after a second of warm-up).
  # --in-memory leaves no hugepage files behind for the next run.
  testpmd_filled "$1" 150 "$TXFIRST" -l 0-1 -n 1 --iova-mode=pa --in-memory \
    -a "$VFIO_LAB_NET0" -a "$VFIO_LAB_NET1" -d "$PMDS/librte_net_virtio.so" -d "$PMDS/librte_mempool_ring.so" \
    -- --forward-mode=io --nb-cores=1 --burst=32 --total-num-mbufs="$MBUFS"
  testpmd_rates "$1"
}

run_ours() { # log -> "total aToB bToA" in Mpps
  # The report (--json) goes to ours-N.json, the logs to ours-N.log; the rate is both ports' after the first second.
  # vfio net fwd itself exits non-zero when a direction forwarded nothing.
  local json="${1%.log}.json"
  vfio net fwd "$VFIO_LAB_NET0" "$VFIO_LAB_NET1" --seconds "$((SECS + 1))" --warmup 1 --burst 32 --tx-first "$TXFIRST" \
    --pool "$MBUFS" --unsafe-noiommu --json \
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

EVENTS=(virtio_set_status virtio_queue_notify virtio_notify)
count_pass() { # dpdk|ours -> "packets kicks interrupts" for the two NICs, from QEMU's trace
  local side="$1" log="$OUT/$1-count.log" off packets
  off="$(stat -c %s "$QLOG" 2>/dev/null || echo 0)"
  qemu_trace on "${EVENTS[@]}" || return 1
  if [ "$side" = dpdk ]; then
    SECS="$COUNT_SECS" run_dpdk "$log" > /dev/null && packets="$(testpmd_tx_total "$log")"
  else
    SECS="$COUNT_SECS" run_ours "$log" > /dev/null \
      && packets="$(awk -v a="$(json_number "${log%.log}.json" packets)" -v b="$(json_number "${log%.log}.json" txFirstPackets)" 'BEGIN { print a + b }')"
  fi
  qemu_trace off "${EVENTS[@]}" || return 1
  [ -n "${packets:-}" ] && [ "$packets" -gt 0 ] || { echo "bench: the $side counting pass sent nothing (see $log)" >&2; return 1; }
  sleep 1
  [ -f "$QLOG" ] || { echo "bench: no QEMU log at $QLOG (lab.sh bench net starts QEMU with -D)" >&2; return 1; }
  tail -c +"$((off + 1))" "$QLOG" | awk -v p="$packets" '
    { v = ""; for (i = 1; i < NF; i++) if ($i == "vdev") { v = $(i + 1); break } }
    v != "" && /virtio_set_status/ { nic[v] = 1 }
    v != "" && /virtio_queue_notify/ { kicks[v]++ }
    v != "" && /virtio_notify / { irqs[v]++ }
    END { k = 0; n = 0; d = 0; for (x in nic) { d++; k += kicks[x]; n += irqs[x] } if (d == 0) exit 1; printf "%d %d %d %d", p, k, n, d }'
}
x="$(count_pass dpdk)" || { echo "bench: the dpdk counting pass failed (see $OUT/dpdk-count.log, $QLOG)" >&2; exit 1; }
read -r dp dk di dn <<< "$x"
x="$(count_pass ours)" || { echo "bench: our counting pass failed (see $OUT/ours-count.log, $QLOG)" >&2; exit 1; }
read -r op ok oi on <<< "$x"
own="$(json_number "$OUT/ours-count.json" doorbellsPerPacket)"
{
  echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (guest); rounds: $ROUNDS x $SECS s each side, alternating"
  echo "dpdk-testpmd io-forward, per round (Mpps, both ports, burst 32, tx-first):$dpdk_all"
  echo "vfio net fwd io-forward, per round (Mpps, both ports, burst 32, tx-first):$ours_all"
  echo "dpdk median $dpdk Mpps, spread $(spread $dpdk_all); ours median $ours Mpps, spread $(spread $ours_all)"
  echo "rings: $TXFIRST tx-first bursts of 32 per port on both sides, $MBUFS buffers each (testpmd mbufs, vfio --pool)"
  echo "counting pass ($COUNT_SECS s each, QEMU trace on, untimed): dpdk $dp packets, $dk kicks, $di interrupts on $dn devices;" \
    "ours $op packets, $ok kicks, $oi interrupts on $on devices (our driver counted ${own:-?} doorbells per packet)"
  awk -v a="$ok" -v b="$op" -v c="$dk" -v d="$dp" -v e="$oi" -v f="$di" \
    'BEGIN { printf "kicks_per_packet ours=%.4f dpdk=%.4f interrupts_per_packet ours=%.4f dpdk=%.4f\n", a / b, c / d, e / b, f / d }' 
  awk -v o="$ours" -v d="$dpdk" 'BEGIN { printf "net-ioforward ours=%s dpdk=%s ratio=%.3f\n", o, d, (d > 0 ? o / d : 0) }'
} > "$OUT/result"
[ "$ours" != 0.0000 ] && [ "$dpdk" != 0.0000 ]
