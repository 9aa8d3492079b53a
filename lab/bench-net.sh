#!/bin/bash
# The guest half of `lab.sh bench net` (runs chrooted in a No-IOMMU guest): the io-forward loop between
# the two virtio-net ports, first DPDK 22.11 testpmd, then this project's forwarder, for the same time.
# Both start with a tx-first burst of 32 and forward in bursts of 32. Writes $VFIO_LAB_OUT/{dpdk,ours}.log
# and, as the last line of $VFIO_LAB_OUT/result, "net-ioforward ours=<Mpps> dpdk=<Mpps> ratio=<ours/dpdk>".
set -u
SECS="${VFIO_BENCH_SECONDS:-10}"
OUT="$VFIO_LAB_OUT"
PMDS=/usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0

bind_vfio() {
  local d=/sys/bus/pci/devices/$1
  echo vfio-pci > "$d/driver_override"
  [ -e "$d/driver" ] && echo "$1" > "$d/driver/unbind"
  echo "$1" > /sys/bus/pci/drivers/vfio-pci/bind
}
bind_vfio "$VFIO_LAB_NET0"
bind_vfio "$VFIO_LAB_NET1"

# DPDK: testpmd prints both ports' throughput every second; the loop ends on SIGINT after SECS + start-up.
# --in-memory leaves no hugepage files behind for the second run.
echo "bench: dpdk-testpmd io-forward for ${SECS} s" >&2
timeout -s INT $((SECS + 1)) stdbuf -oL dpdk-testpmd -l 0-1 -n 1 --iova-mode=pa --in-memory \
  -a "$VFIO_LAB_NET0" -a "$VFIO_LAB_NET1" -d "$PMDS/librte_net_virtio.so" -d "$PMDS/librte_mempool_ring.so" \
  -- --forward-mode=io --tx-first --nb-cores=1 --burst=32 --total-num-mbufs=8192 --stats-period=1 \
  < /dev/null > "$OUT/dpdk.log" 2>&1
# Steady rate: per-second Tx-pps of both ports summed, the first report (start-up) left out, averaged.
dpdk="$(sed 's/\x1b\[[0-9;]*[A-Za-z]//g' "$OUT/dpdk.log" | awk '
  /Tx-pps:/ { for (i = 1; i <= NF; i++) if ($i == "Tx-pps:") v = $(i + 1); sum += v; n++;
              if (n % 2 == 0) { s[++k] = sum; sum = 0 } }
  END { t = 0; m = 0; for (i = 2; i <= k; i++) { t += s[i]; m++ }
        if (m == 0) { print "0"; exit } ; printf "%.4f", t / m / 1e6 }')"
echo "bench: dpdk ${dpdk} Mpps" >&2

echo "bench: vfio-net fwd for ${SECS} s" >&2
dotnet src/Vfio.VirtioNet.Tools/bin/Release/net10.0/vfio-net.dll fwd --port-a "$VFIO_LAB_NET0" --port-b "$VFIO_LAB_NET1" \
  --seconds "$SECS" --warmup 1 --burst 32 --unsafe-noiommu > "$OUT/ours.log" 2>&1
cat "$OUT/ours.log" >&2
ours="$(sed -n 's/^fwd-mpps=//p' "$OUT/ours.log")"
ours="${ours:-0}"
echo "bench: ours ${ours} Mpps" >&2
{
  echo "dpdk-testpmd io-forward: ${dpdk} Mpps (both ports, burst 32, tx-first)"
  echo "vfio-net fwd io-forward: ${ours} Mpps (both ports, burst 32, tx-first)"
  awk -v o="$ours" -v d="$dpdk" 'BEGIN { printf "net-ioforward ours=%s dpdk=%s ratio=%.3f\n", o, d, (d > 0 ? o / d : 0) }'
} > "$OUT/result"
[ "$ours" != 0 ] && [ "$dpdk" != 0 ]
