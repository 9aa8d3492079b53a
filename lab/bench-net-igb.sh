#!/bin/bash
# The guest half of `lab.sh bench net igb` (a No-IOMMU guest on QEMU 10 with the two 82576 ports of VFIO_LAB_IGB=1,
# one cable between them): io-forward between the ports, DPDK 22.11 testpmd with its e1000 PMD (librte_net_e1000,
# which drives the 82576 as "net_e1000_igb") against this project's `vfio net fwd` with the igb driver, alternating
# VFIO_BENCH_ROUNDS rounds of VFIO_BENCH_SECONDS each as lab/bench-net.sh does, once with one queue pair and once with
# two and RSS. Both sides get the same rings and buffers: 512 receive and 512 transmit descriptors per queue
# (--rxd/--txd, our default ring) and 8 x queues x 512 buffers (--total-num-mbufs; our pool,
# IgbDriver.PoolSizeFor); bursts of 32, and the rings kept full: VFIO_BENCH_TX_FIRST (16) bursts per queue and port
# before forwarding (testpmd's interactive `start tx_first 16`, ours --tx-first 16), a ring's worth (16 x 32 = 512)
# in flight per queue on each port. With two queues both send UDP/IPv4 frames of
# several flows (testpmd --txonly-multi-flow --rss-udp; ours --flows 16), so RSS spreads them over both queues.
# The bench fails (exit 1, no ratio line) when a side forwarded nothing, a round's rate is 0, or one direction's rate
# differs from the other's by more than 20% (a stalled direction would otherwise hide in the total).
# Writes $VFIO_LAB_OUT/{dpdk,ours}-Qq-N.log, ours-Qq-N.json and $VFIO_LAB_OUT/result, whose last line is
# "net-igb-ioforward ours=<Mpps> dpdk=<Mpps> ratio=<ours/dpdk>" (one queue pair).
set -u
SECS="${VFIO_BENCH_SECONDS:-5}"
ROUNDS="${VFIO_BENCH_ROUNDS:-5}"
OUT="$VFIO_LAB_OUT"
RING=512
TXFIRST="${VFIO_BENCH_TX_FIRST:-16}"
PMDS=/usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# vfio, json_number, bind_vfio, median, spread, testpmd_timed, balanced, testpmd_rates and fwd_rates.
. lab/bench-vfio.sh
P0="${VFIO_LAB_IGB0:?no igb ports: boot with VFIO_LAB_QEMU=10 VFIO_LAB_IGB=1}" P1="${VFIO_LAB_IGB1:?}"
pmd() { local f; for f in "$PMDS/$1.so" "$PMDS/$1.so.23"; do [ -e "$f" ] && { echo "$f"; return; }; done; echo "$PMDS/$1.so"; }
modprobe vfio-pci 2>/dev/null || true
bind_vfio "$P0"
bind_vfio "$P1"

run_dpdk() { # queues log -> "total port0-tx port1-tx" in Mpps
  local q="$1" log="$2" multi=()
  [ "$q" -gt 1 ] && multi=(--rss-udp --txonly-multi-flow)
  # Interactive (testpmd_filled): `start tx_first $TXFIRST`, a second of warm-up, SECS one-second reports; its start
  # may take two minutes under TCG (600 polls of 0.2 s).
  testpmd_filled "$log" 600 "$TXFIRST" -l 0-1 -n 1 --iova-mode=pa --in-memory \
    -a "$P0" -a "$P1" -d "$(pmd librte_net_e1000)" -d "$(pmd librte_mempool_ring)" \
    -- --forward-mode=io --nb-cores=1 --burst=32 --rxq="$q" --txq="$q" --rxd=$RING --txd=$RING \
    --total-num-mbufs=$((8 * q * RING)) "${multi[@]}"
  testpmd_rates "$log"
}

run_ours() { # queues log -> "total aToB bToA" in Mpps
  local q="$1" log="$2" json="${2%.log}.json" flows=0
  [ "$q" -gt 1 ] && flows=16
  vfio net fwd "$P0" "$P1" --seconds "$((SECS + 1))" --warmup 1 --burst 32 --tx-first "$TXFIRST" --queues "$q" --flows "$flows" \
    --unsafe-noiommu --json \
    > "$json" 2> "$log" || return 1
  fwd_rates "$json"
}

fail() { echo "bench: $*" >&2; exit 1; }
declare -A ALL DB
for r in $(seq 1 "$ROUNDS"); do
  for q in 1 2; do
    d="$(run_dpdk "$q" "$OUT/dpdk-${q}q-$r.log")" || fail "round $r, $q queue(s): dpdk-testpmd reported no rate (see $OUT/dpdk-${q}q-$r.log)"
    read -r dt d0 d1 <<< "$d"
    balanced "$d0" "$d1" || fail "round $r, $q queue(s): dpdk-testpmd's directions differ by more than 20% (port 0 tx $d0, port 1 tx $d1 Mpps)"
    echo "bench: round $r dpdk-testpmd $q queue(s) $dt Mpps (port 0 tx $d0, port 1 tx $d1)" >&2
    o="$(run_ours "$q" "$OUT/ours-${q}q-$r.log")" || fail "round $r, $q queue(s): vfio net fwd failed or reported no rate (see $OUT/ours-${q}q-$r.log)"
    read -r ot o0 o1 <<< "$o"
    balanced "$o0" "$o1" || fail "round $r, $q queue(s): vfio net fwd's directions differ by more than 20% (a->b $o0, b->a $o1 Mpps)"
    echo "bench: round $r vfio net fwd $q queue(s) $ot Mpps (a->b $o0, b->a $o1)" >&2
    ALL[dpdk$q]+=" $dt" ALL[ours$q]+=" $ot" DB[$q]+=" $(json_number "$OUT/ours-${q}q-$r.json" doorbellsPerPacket)"
  done
done
dpdk1="$(median ${ALL[dpdk1]})" ours1="$(median ${ALL[ours1]})" dpdk2="$(median ${ALL[dpdk2]})" ours2="$(median ${ALL[ours2]})"
{
  echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (guest); rounds: $ROUNDS x $SECS s per side and queue count, alternating"
  for q in 1 2; do
    echo "dpdk-testpmd io-forward, $q queue(s), per round (Mpps, both ports, burst 32, tx_first $TXFIRST, rings $RING, mbufs $((8 * q * RING))):${ALL[dpdk$q]}"
    echo "vfio net fwd io-forward, $q queue(s), per round (Mpps, both ports, burst 32, tx-first $TXFIRST, rings $RING, pool $((8 * q * RING))):${ALL[ours$q]}"
    echo "vfio net fwd tail writes per packet, $q queue(s), per round (RDT and TDT, the driver's own count):${DB[$q]}"
  done
  echo "1 queue: dpdk median $dpdk1 Mpps, spread $(spread ${ALL[dpdk1]}); ours median $ours1 Mpps, spread $(spread ${ALL[ours1]})"
  echo "2 queues, RSS: dpdk median $dpdk2 Mpps, spread $(spread ${ALL[dpdk2]}); ours median $ours2 Mpps, spread $(spread ${ALL[ours2]})"
  awk -v o="$ours2" -v d="$dpdk2" 'BEGIN { printf "net-igb-ioforward-2q ours=%s dpdk=%s ratio=%.3f\n", o, d, (d > 0 ? o / d : 0) }'
  awk -v o="$ours1" -v d="$dpdk1" 'BEGIN { printf "net-igb-ioforward ours=%s dpdk=%s ratio=%.3f\n", o, d, (d > 0 ? o / d : 0) }'
} > "$OUT/result"
[ "$ours1" != 0.0000 ] && [ "$dpdk1" != 0.0000 ] && [ "$ours2" != 0.0000 ] && [ "$dpdk2" != 0.0000 ]
