#!/bin/bash
# Runs inside a lab guest (lab.sh bench nvme): the kernel's nvme driver with fio, then the project's driver with
# vfio-nvme-perf, on the same null-co-backed QEMU nvme, 4 KiB random reads at queue depth 32 on one queue.
# Leaves fio.json and key=value results in $VFIO_LAB_OUT; the host reads them and prints the comparison.
set -euo pipefail
: "${VFIO_LAB_NVME:?}" "${VFIO_LAB_OUT:?}"
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

# 2. Ours: rebind to vfio-pci (the perf tool does it) and run the same workload.
echo "bench: ours: vfio-nvme-perf (${SECONDS_PER_RUN}s)" >&2
dotnet src/Vfio.Nvme.Perf/bin/"${CONFIG:-Release}"/net10.0/vfio-nvme-perf.dll "$VFIO_LAB_NVME" --bind --unsafe-noiommu \
    -q 32 -t "$SECONDS_PER_RUN" --alloc-check 2000 | tee "$VFIO_LAB_OUT/perf.txt" >&2
line="$(grep '^randread ' "$VFIO_LAB_OUT/perf.txt")"
for key in iops p50_us p99_us; do
  echo "ours_$key=$(sed -n "s/.* $key=\([0-9.]*\).*/\1/p" <<< "$line")" >> "$out"
done
echo "ours_alloc_bytes_per_io=$(sed -n 's/.*allocated_bytes_per_io=\([0-9.]*\).*/\1/p' "$VFIO_LAB_OUT/perf.txt")" >> "$out"
