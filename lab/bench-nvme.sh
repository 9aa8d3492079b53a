#!/bin/bash
# Runs inside a lab guest (lab.sh bench nvme): the kernel's nvme driver with fio, then the project's driver with
# `vfio nvme perf`, on the same null-co-backed QEMU nvme, 4 KiB random reads at queue depth 32 on one queue.
# Leaves fio.json, perf.json and key=value results in $VFIO_LAB_OUT; the host reads them and prints the comparison.
set -euo pipefail
: "${VFIO_LAB_NVME:?}" "${VFIO_LAB_OUT:?}"
# vfio and json_number.
. "$(dirname "${BASH_SOURCE[0]}")/bench-vfio.sh"
SECONDS_PER_RUN="${BENCH_SECONDS:-8}"
out="$VFIO_LAB_OUT/nvme-bench.txt"
: > "$out"
dev_dir="/sys/bus/pci/devices/$VFIO_LAB_NVME"

# 1. Kernel: the controller is bound to nvme at boot; find its namespace block device.
[ "$(basename "$(readlink "$dev_dir/driver")")" = nvme ] || { echo "bench: $VFIO_LAB_NVME is not on the nvme driver" >&2; exit 1; }
for _ in $(seq 50); do
  blk="$(ls -d "$dev_dir"/nvme/nvme*/nvme*n1 2>/dev/null | head -1 || true)"
  [ -n "$blk" ] && break
  sleep 0.2
done
[ -n "${blk:-}" ] || { echo "bench: no namespace block device under $dev_dir/nvme" >&2; exit 1; }
blkdev="/dev/$(basename "$blk")"
echo "bench: kernel: fio on $blkdev (${SECONDS_PER_RUN}s)" >&2
fio --name=randread --filename="$blkdev" --direct=1 --rw=randread --bs=4k --iodepth=32 --numjobs=1 \
    --ioengine=io_uring --runtime="$SECONDS_PER_RUN" --time_based --group_reporting \
    --output-format=json > "$VFIO_LAB_OUT/fio.json"

# 2. Ours: rebind to vfio-pci and run the same workload; then the managed bytes one synchronous read allocates.
echo "bench: ours: vfio nvme perf (${SECONDS_PER_RUN}s)" >&2
vfio bind "$VFIO_LAB_NVME" >&2
vfio nvme perf "$VFIO_LAB_NVME" --unsafe-noiommu -q 32 -t "$SECONDS_PER_RUN" --alloc-check 2000 --json > "$VFIO_LAB_OUT/perf.json"
cat "$VFIO_LAB_OUT/perf.json" >&2
perf="$VFIO_LAB_OUT/perf.json"
# A field the report lacks must fail the bench, never become a 0 that prints a ratio.
field() { # key -> its number, or exit 1
  local v; v="$(json_number "$perf" "$1")"
  [ -n "$v" ] || { echo "bench: perf.json has no number for $1" >&2; exit 1; }
  echo "$v"
}
iops="$(field iops)"; p50="$(field p50Us)"; p99="$(field p99Us)"; alloc="$(field allocatedBytesPerIo)"
awk -v v="$iops" 'BEGIN { exit !(v > 0) }' || { echo "bench: our driver did no I/O (iops=$iops)" >&2; exit 1; }
{
  printf 'ours_iops=%.0f\n' "$iops"
  printf 'ours_p50_us=%.1f\n' "$p50"
  printf 'ours_p99_us=%.1f\n' "$p99"
  printf 'ours_alloc_bytes_per_io=%.3f\n' "$alloc"
} >> "$out"
