#!/bin/bash
# The guest half of `lab.sh bench nvme` (runs chrooted in a No-IOMMU guest booted with nvme.poll_queues=1).
#
# Timed runs, all on the null-co controller $VFIO_LAB_NVME, one queue and one job each, BENCH_SECONDS measured after
# BENCH_RAMP seconds of ramp, the workloads in the same order on every side:
#   4 KiB randread QD1, 4 KiB randread QD32, 4 KiB randwrite QD32, 128 KiB sequential read QD8.
# Sides:
#   kernel-irq     fio io_uring, completions by interrupt
#   kernel-poll    fio io_uring --hipri: completions polled on the driver's poll queue
#   kernel-sqpoll  fio io_uring --sqthread_poll: a kernel thread (on the other vCPU) polls the submission ring
#   kernel-poll-notime  kernel-poll with --gtod_reduce=1: fio then reads the clock for almost nothing and reports
#                  no latencies; the guest's clocksource under TCG is the HPET (about 2 us a read), and timing every
#                  I/O costs fio more than its polling saves, so its IOPS are the kernel's cheapest
#                  (all four with --fixedbufs --registerfiles, fio pinned to CPU 0, the block queue without iostats
#                  and merging)
#   ours-raw       vfio nvme perf --api raw
#   ours-async     vfio nvme perf --api async
#   spdk           spdk_nvme_perf, when SPDK_NVME_PERF names the binary
# For every run, CPU time per I/O from the guest's /proc/stat and, for the kernel, interrupts per I/O from
# /proc/interrupts (the controller's vectors), both over a window inside the measured seconds (see window_deltas);
# ours reports its doorbell writes per I/O.
#
# Then a data check on the file-backed controller $VFIO_LAB_NVME2: the kernel writes random data that ours reads
# back, ours writes random data that the kernel reads back (each compared with cmp), and one
# `vfio nvme perf -w randrw --verify` run that must see no mismatch.
#
# Writes every report and log to $VFIO_LAB_OUT, and $VFIO_LAB_OUT/result: the table, notes, and as its last line
#   nvme-randread-qd32 ours_async=N ours_raw=N kernel_best=N ratio=<ours_async/kernel_best>
# only when every run and check passed; otherwise the failures, and the exit code is 1.
set -uo pipefail
: "${VFIO_LAB_NVME:?}" "${VFIO_LAB_NVME2:?}" "${VFIO_LAB_OUT:?}"
# vfio and json_number.
. "$(dirname "${BASH_SOURCE[0]}")/bench-vfio.sh"

SECS="${BENCH_SECONDS:-10}" RAMP="${BENCH_RAMP:-2}"
OUT="$VFIO_LAB_OUT"
HZ="$(getconf CLK_TCK)"
RUNS="$OUT/runs.tsv"          # side workload iops p50us p99us cpu-s/M irq/IO sq-doorbells/IO cq-doorbells/IO
FAILURES="$OUT/failures.txt"
NOTES="$OUT/notes.txt"
: > "$RUNS"; : > "$FAILURES"; : > "$NOTES"
# rw, bytes, depth
WORKLOADS=("randread 4096 1" "randread 4096 32" "randwrite 4096 32" "read 131072 8")

say() { echo "bench: $*" >&2; }
fail() { echo "$*" >> "$FAILURES"; say "FAILED: $*"; }
note() { echo "$*" >> "$NOTES"; say "$*"; }
is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
positive() { awk -v v="$1" 'BEGIN { exit !(v > 0) }'; }

# The measuring window (window_deltas) needs 2 s of margin inside the measured seconds.
is_uint "$SECS" && [ "$SECS" -ge 4 ] || { echo "bench: BENCH_SECONDS must be a whole number of at least 4" >&2; exit 2; }
is_uint "$RAMP" || { echo "bench: BENCH_RAMP must be a whole number of seconds" >&2; exit 2; }

workload_name() { # rw bytes depth -> e.g. randread-4k-qd32
  echo "$1-$(($2 / 1024))k-qd$3"
}

# The namespace block device of controller BDF, once the driver has probed it (that runs asynchronously after a bind).
blockdev_of() { # bdf -> /dev/nvmeXnY
  local d="/sys/bus/pci/devices/$1" b _
  for _ in $(seq 150); do
    for b in "$d"/nvme/nvme*/nvme*n1; do
      [ -b "/dev/${b##*/}" ] && { echo "/dev/${b##*/}"; return 0; }
    done
    sleep 0.2
  done
  return 1
}
# The first non-blank line of a log: a command's error comes before any usage hint.
first_line() { grep -m 1 -v '^[[:space:]]*$' "$1"; }

# ------------------------------------------------------------------------------------------------ CPU and interrupts

# Every half second: "uptime busy-jiffies nvme-interrupts" for controller CTRL (e.g. nvme0; "-" for none). Busy is
# the aggregate cpu line's user+nice+system+irq+softirq+steal; interrupts are the sum over CPUs of CTRL's vectors
# (nvme0q0, nvme0q1, ...). Bash builtins only, and a timed read on a FIFO for the pause, so that the sampler itself
# forks nothing and costs next to no CPU.
sampler() { # ctrl
  local ctrl="$1" up u n s hi si st irq ncpu c tick="/tmp/bench-tick.$BASHPID"
  local -a f
  mkfifo "$tick" && exec 7<> "$tick" && rm -f "$tick"
  while :; do
    read -r up _ < /proc/uptime
    read -r _ u n s _ _ hi si st _ < /proc/stat
    irq=0
    {
      read -r -a f; ncpu=${#f[@]}
      while read -r -a f; do
        if [ "${#f[@]}" -gt 0 ] && [[ "${f[-1]}" =~ ^${ctrl}q[0-9]+$ ]]; then
          for ((c = 1; c <= ncpu; c++)); do irq=$((irq + f[c])); done
        fi
      done
    } < /proc/interrupts
    echo "$up $((u + n + s + hi + si + st)) $irq"
    read -r -t 0.5 -u 7 _
  done
}

# Runs COMMAND with the sampler writing to SAMPLES beside it; COMMAND's exit code; END_UPTIME is when it ended.
SAMPLER=""
trap '[ -z "$SAMPLER" ] || kill "$SAMPLER" 2> /dev/null' EXIT   # a script that dies leaves no sampler running
run_sampled() { # ctrl samples command...
  local ctrl="$1" samples="$2" rc; shift 2
  sampler "$ctrl" > "$samples" &
  SAMPLER=$!
  "$@"; rc=$?
  read -r END_UPTIME _ < /proc/uptime
  kill "$SAMPLER" 2> /dev/null; wait "$SAMPLER" 2> /dev/null
  SAMPLER=""
  return "$rc"
}

# "seconds busy-jiffies interrupts" between the sampler's samples inside [end - SECS + 0.5, end - 1.5]. Every peer
# ends its measured seconds just before it exits (fio and spdk_nvme_perf print their report, ours disposes the
# controller), so this window lies within them: it leaves out the ramp, the start-up (a dotnet start under TCG
# costs seconds of CPU that a longer run would not repeat) and the teardown, the same for every side.
window_deltas() { # samples
  awk -v from="$(awk -v e="$END_UPTIME" -v t="$SECS" 'BEGIN { print e - t + 0.5 }')" \
      -v to="$(awk -v e="$END_UPTIME" 'BEGIN { print e - 1.5 }')" '
    $1 >= from && !have { t0 = $1; b0 = $2; i0 = $3; have = 1 }
    $1 <= to { t1 = $1; b1 = $2; i1 = $3 }
    END { if (!have || t1 - t0 < 1) exit 1; printf "%.2f %d %d\n", t1 - t0, b1 - b0, i1 - i0 }' "$1"
}

# Appends one row to RUNS: CPU-seconds per million I/Os and interrupts per I/O from the window's deltas at the run's
# average rate (IOPS x window seconds I/Os). irq is "-" for sides that have no kernel interrupts to count.
record() { # side workload samples iops p50 p99 irq(yes|-) sq cq
  local side="$1" wl="$2" samples="$3" iops="$4" p50="$5" p99="$6" irq="$7" sq="$8" cq="$9" d secs busy ints
  d="$(window_deltas "$samples")" || { fail "$side $wl: too few CPU samples inside the measured seconds ($samples)"; return 1; }
  read -r secs busy ints <<< "$d"
  awk -v side="$side" -v wl="$wl" -v iops="$iops" -v p50="$p50" -v p99="$p99" -v secs="$secs" -v busy="$busy" \
      -v ints="$ints" -v hz="$HZ" -v irq="$irq" -v sq="$sq" -v cq="$cq" 'BEGIN {
    ios = iops * secs
    printf "%s\t%s\t%.0f\t%s\t%s\t%.2f\t%s\t%s\t%s\n", side, wl, iops,
      (p50 == "-" ? "-" : sprintf("%.1f", p50)), (p99 == "-" ? "-" : sprintf("%.1f", p99)), busy / hz / ios * 1e6,
      (irq == "-" ? "-" : sprintf("%.3f", ints / ios)), sq, cq }' >> "$RUNS"
}
# The value of SIDE at WORKLOAD in column COL of RUNS (1-based: 3 IOPS, 7 interrupts per I/O).
run_value() { awk -F'\t' -v s="$1" -v w="$2" -v c="$3" '$1 == s && $2 == w { print $c }' "$RUNS"; }

# ------------------------------------------------------------------------------------------------ the kernel (fio)

# The total latencies (lat_ns) of one section of jobs[0] ("read" or "write") of fio's JSON report, with the
# section's own fields before them, into a file json_number can read.
fio_section() { # json section out
  awk -v s="$2" '$0 ~ "^      \"" s "\" : \\{" { on = 1 } on { print } on && /^      \}/ { exit }' "$1" > "$3"
}
fio_latencies() { # section-file out
  awk '/^        "lat_ns" : \{/ { on = 1 } on { print } on && /^        \}/ { exit }' "$1" > "$2"
}

run_fio() { # side rw bytes depth
  local side="$1" rw="$2" bs="$3" qd="$4" wl json log samples sec err ios iops p50 p99
  wl="$(workload_name "$rw" "$bs" "$qd")"
  json="$OUT/fio-$side-$wl.json" log="$OUT/fio-$side-$wl.log" samples="$OUT/cpu-$side-$wl.txt"
  local args=(--name="$wl" --filename="$KBLK" --direct=1 --rw="$rw" --bs="$bs" --iodepth="$qd" --numjobs=1
    --ioengine=io_uring --fixedbufs --registerfiles --norandommap --randrepeat=0 --cpus_allowed=0
    --time_based --runtime="$SECS" --ramp_time="$RAMP" --clat_percentiles=0 --lat_percentiles=1 --output-format=json)
  case "$side" in
    kernel-irq) ;;
    kernel-poll) args+=(--hipri) ;;
    kernel-sqpoll) args+=(--sqthread_poll=1 --sqthread_poll_cpu=1) ;;
    kernel-poll-notime) args+=(--hipri --gtod_reduce=1) ;;
  esac
  say "$side $wl: fio ${args[*]:2}"
  run_sampled "$KCTRL" "$samples" fio "${args[@]}" > "$json" 2> "$log" \
    || { fail "$side $wl: fio exited $? ($(first_line "$log"))"; return 1; }
  err="$(json_number "$json" error)"
  [ "$err" = 0 ] || { fail "$side $wl: fio reported error '${err:-none}' (see $json)"; return 1; }
  case "$rw" in *write*) sec="write" ;; *) sec="read" ;; esac
  fio_section "$json" "$sec" "$json.$sec"
  fio_latencies "$json.$sec" "$json.$sec-lat"
  ios="$(json_number "$json.$sec" total_ios)" iops="$(json_number "$json.$sec" iops)"
  if [ "$side" = kernel-poll-notime ]; then
    # No time kept, so no latencies: IOPS only.
    [ -n "$ios" ] && [ -n "$iops" ] || { fail "$side $wl: fio's report lacks $sec total_ios or iops ($json)"; return 1; }
    positive "$ios" && positive "$iops" || { fail "$side $wl: fio did no I/O ($sec total_ios=$ios)"; return 1; }
    record "$side" "$wl" "$samples" "$iops" - - yes - -
    return
  fi
  p50="$(json_number "$json.$sec-lat" 50.000000)" p99="$(json_number "$json.$sec-lat" 99.000000)"
  [ -n "$ios" ] && [ -n "$iops" ] && [ -n "$p50" ] && [ -n "$p99" ] \
    || { fail "$side $wl: fio's report lacks $sec total_ios, iops or lat_ns percentiles ($json)"; return 1; }
  positive "$ios" && positive "$iops" || { fail "$side $wl: fio did no I/O ($sec total_ios=$ios)"; return 1; }
  # fio's histogram tops out at 2^34 ns: a percentile there is a clock that was never started, not a latency (fio
  # 3.33's clat with --sqthread_poll, hence lat_ns).
  awk -v v="$p99" 'BEGIN { exit !(v < 1e10) }' || { fail "$side $wl: fio reports a p99 of $p99 ns: not a measurement"; return 1; }
  record "$side" "$wl" "$samples" "$iops" "$(awk -v v="$p50" 'BEGIN { print v / 1000 }')" \
    "$(awk -v v="$p99" 'BEGIN { print v / 1000 }')" yes - -
}

# ------------------------------------------------------------------------------------------------ ours

# A number of vfio's JSON, or a failure naming the field (a field the report lacks must never become a 0).
PERF_FIELD=""
perf_field() { # json key -> PERF_FIELD
  PERF_FIELD="$(json_number "$1" "$2")"
  [ -n "$PERF_FIELD" ] || { fail "$(basename "$1"): no number for $2"; return 1; }
}

# vfio nvme perf on BDF; its JSON in OUT/NAME.json. Fails on a non-zero exit, errors, mismatches or no I/O.
run_perf() { # name bdf ctrl samples args...
  local name="$1" bdf="$2" ctrl="$3" samples="$4" json="$OUT/$1.json" log="$OUT/$1.log" v; shift 4
  say "$name: vfio nvme perf $bdf --unsafe-noiommu $*"
  run_sampled "$ctrl" "$samples" vfio nvme perf "$bdf" --unsafe-noiommu "$@" --json > "$json" 2> "$log" \
    || { fail "$name: vfio nvme perf exited $? ($(first_line "$log"))"; return 1; }
  perf_field "$json" ios || return 1; positive "$PERF_FIELD" || { fail "$name: no I/O completed (ios=$PERF_FIELD)"; return 1; }
  perf_field "$json" errors || return 1; [ "$PERF_FIELD" = 0 ] || { fail "$name: $PERF_FIELD I/O errors"; return 1; }
  perf_field "$json" mismatches || return 1; [ "$PERF_FIELD" = 0 ] || { fail "$name: $PERF_FIELD data mismatches"; return 1; }
}

run_ours() { # api rw bytes depth
  local side="ours-$1" api="$1" rw="$2" bs="$3" qd="$4" wl name v
  wl="$(workload_name "$rw" "$bs" "$qd")" name="ours-$1-$wl"
  run_perf "$name" "$VFIO_LAB_NVME" - "$OUT/cpu-$side-$wl.txt" \
    -w "$rw" -o "$bs" -q "$qd" -c 1 -t "$SECS" --ramp "$RAMP" --api "$api" || return 1
  local -A f
  for v in iops p50Us p99Us submissionDoorbellsPerIo completionDoorbellsPerIo cpuSecondsPerMillionIos allocatedBytesPerIo; do
    perf_field "$OUT/$name.json" "$v" || return 1
    f[$v]="$PERF_FIELD"
  done
  positive "${f[iops]}" || { fail "$name: iops=${f[iops]}"; return 1; }
  note "$side $wl: self-reported ${f[cpuSecondsPerMillionIos]} CPU-s per million I/Os (process), ${f[allocatedBytesPerIo]} managed bytes allocated per I/O"
  record "$side" "$wl" "$OUT/cpu-$side-$wl.txt" "${f[iops]}" "${f[p50Us]}" "${f[p99Us]}" - \
    "$(printf '%.3f' "${f[submissionDoorbellsPerIo]}")" "$(printf '%.3f' "${f[completionDoorbellsPerIo]}")"
}

# ------------------------------------------------------------------------------------------------ SPDK

run_spdk() { # rw bytes depth
  local rw="$1" bs="$2" qd="$3" wl log iops p50 p99
  wl="$(workload_name "$rw" "$bs" "$qd")" log="$OUT/spdk-$wl.log"
  local args=(-q "$qd" -o "$bs" -w "$rw" -t "$SECS" -a "$RAMP" -c 0x1 -L --iova-mode pa
    -r "trtype:PCIe traddr:$VFIO_LAB_NVME")
  say "spdk $wl: $SPDK_NVME_PERF ${args[*]}"
  run_sampled - "$OUT/cpu-spdk-$wl.txt" "$SPDK_NVME_PERF" "${args[@]}" > "$log" 2>&1 < /dev/null
  local rc=$?
  rm -f /dev/hugepages/spdk_pid*   # DPDK's hugepage files, which would starve the runs after it
  [ "$rc" = 0 ] || { fail "spdk $wl: spdk_nvme_perf exited $rc ($(tail -n 1 "$log"))"; return 1; }
  # "Total : IOPS MiB/s average min max", and with -L the percentiles as "50.00000% : 12.345us".
  iops="$(awk '$1 == "Total" && $2 == ":" { print $3; exit }' "$log")"
  p50="$(awk '$1 == "50.00000%" { sub("us", "", $3); print $3; exit }' "$log")"
  p99="$(awk '$1 == "99.00000%" { sub("us", "", $3); print $3; exit }' "$log")"
  [ -n "$iops" ] && [ -n "$p50" ] && [ -n "$p99" ] || { fail "spdk $wl: no Total line or percentiles in $log"; return 1; }
  positive "$iops" || { fail "spdk $wl: no I/O (IOPS $iops)"; return 1; }
  record spdk "$wl" "$OUT/cpu-spdk-$wl.txt" "$iops" "$p50" "$p99" - - -
}

# Runs every workload on SIDE with RUNNER; after the first failure the side's remaining workloads are skipped
# (a side that cannot run, e.g. an API not there yet, would fail each the same way).
run_side() { # side runner [runner args]
  local side="$1" w; shift
  for w in "${WORKLOADS[@]}"; do
    # shellcheck disable=SC2086
    "$@" $w || { fail "$side: stopped at $(workload_name $w); its later workloads were not run"; return 1; }
  done
}

# ================================================================================================ timed runs

say "guest kernel $(uname -r), $(nproc) vCPUs, USER_HZ $HZ, $(fio --version); ${SECS}s measured after ${RAMP}s ramp"
KBLK="$(blockdev_of "$VFIO_LAB_NVME")" || { echo "bench: $VFIO_LAB_NVME has no namespace block device" >&2; exit 1; }
KCTRL=""   # the controller's name (nvme0), which names its interrupt vectors (nvme0q0, nvme0q1, ...)
for c in "/sys/bus/pci/devices/$VFIO_LAB_NVME"/nvme/nvme*; do KCTRL="${c##*/}"; break; done
q="/sys/block/${KBLK#/dev/}/queue"
# The block layer at its cheapest for fio: no scheduler, no per-request I/O accounting, no merge attempts.
echo none 2> /dev/null > "$q/scheduler"
echo 0 > "$q/iostats"
echo 2 > "$q/nomerges"
note "kernel: $KBLK on $KCTRL ($VFIO_LAB_NVME, null-co); nvme.poll_queues=$(cat /sys/module/nvme/parameters/poll_queues)," \
  "io_poll=$(cat "$q/io_poll"), scheduler $(cat "$q/scheduler"), iostats $(cat "$q/iostats"), nomerges $(cat "$q/nomerges");" \
  "$(dmesg | grep -o "$KCTRL: [0-9/]* default/read/poll queues" | tail -n 1)"
# Polled I/O needs a poll queue the block layer maps (io_poll 1): without one --hipri fails, or worse, measures
# something else. The polled runs are also checked for interrupts below.
[ "$(cat "$q/io_poll")" = 1 ] || fail "kernel: $KBLK has no polled queue (io_poll=$(cat "$q/io_poll"); is nvme.poll_queues=1 on the command line?)"

for side in kernel-irq kernel-poll kernel-sqpoll kernel-poll-notime; do
  run_side "$side" run_fio "$side"
done
# What says the polled runs polled: interrupts per I/O near 0, where the interrupt-driven runs take about one.
for w in "${WORKLOADS[@]}"; do
  # shellcheck disable=SC2086
  wl="$(workload_name $w)"
  irq="$(run_value kernel-irq "$wl" 7)"
  [ -z "$irq" ] || positive "$irq" || fail "kernel-irq $wl: no nvme interrupts counted ($KCTRL in /proc/interrupts)"
  for side in kernel-poll kernel-poll-notime; do
    poll="$(run_value "$side" "$wl" 7)"
    [ -z "$poll" ] || awk -v v="$poll" 'BEGIN { exit !(v < 0.01) }' || fail "$side $wl: $poll interrupts per I/O: not polled"
  done
done
grep "${KCTRL}q" /proc/interrupts > "$OUT/interrupts-after-kernel.txt"

say "ours: binding $VFIO_LAB_NVME to vfio-pci"
if vfio bind "$VFIO_LAB_NVME" > "$OUT/bind.log" 2>&1; then
  run_side ours-raw run_ours raw
  run_side ours-async run_ours async
  if [ -n "${SPDK_NVME_PERF:-}" ]; then
    if [ -x "$SPDK_NVME_PERF" ]; then run_side spdk run_spdk; else fail "spdk: SPDK_NVME_PERF=$SPDK_NVME_PERF is not executable"; fi
  else
    note "spdk: skipped (SPDK_NVME_PERF is not set)"
  fi
else
  fail "ours: vfio bind $VFIO_LAB_NVME failed ($(first_line "$OUT/bind.log"))"
fi

# ================================================================================================ data check

# Each step needs the one before: the first failure ends the check.
data_check() {
  local bdf="$VFIO_LAB_NVME2" blk lbs size1 size2
  blk="$(blockdev_of "$bdf")" || { fail "verify: $bdf has no namespace block device"; return 1; }
  lbs="$(cat "/sys/block/${blk#/dev/}/queue/logical_block_size")"
  # 8-16 MiB in whole 4 KiB pages, so that every transfer is whole blocks.
  size1=$(( (8 << 20) + (RANDOM % 2049) * 4096 )) size2=$(( (8 << 20) + (RANDOM % 2049) * 4096 ))
  head -c "$size1" /dev/urandom > /tmp/verify-kernel-wrote.bin
  say "verify: the kernel writes $size1 random bytes to $blk (dd oflag=direct)"
  dd if=/tmp/verify-kernel-wrote.bin of="$blk" bs=1M oflag=direct conv=fsync status=none \
    || { fail "verify: dd to $blk failed"; return 1; }
  vfio bind "$bdf" > "$OUT/verify-bind.log" 2>&1 || { fail "verify: vfio bind $bdf failed ($(first_line "$OUT/verify-bind.log"))"; return 1; }
  say "verify: ours reads them back"
  vfio nvme read "$bdf" --unsafe-noiommu --lba 0 --count $((size1 / lbs)) --out /tmp/verify-ours-read.bin --json \
    > "$OUT/verify-ours-read.json" 2> "$OUT/verify-ours-read.log" \
    || { fail "verify: vfio nvme read failed ($(first_line "$OUT/verify-ours-read.log"))"; return 1; }
  cmp /tmp/verify-kernel-wrote.bin /tmp/verify-ours-read.bin >&2 \
    || { fail "verify: what ours read differs from what the kernel wrote"; return 1; }
  note "verify: the kernel wrote $size1 bytes (dd oflag=direct), ours read them back: identical"

  head -c "$size2" /dev/urandom > /tmp/verify-ours-wrote.bin
  say "verify: ours writes $size2 random bytes"
  vfio nvme write "$bdf" --unsafe-noiommu --lba 0 --in /tmp/verify-ours-wrote.bin --json \
    > "$OUT/verify-ours-write.json" 2> "$OUT/verify-ours-write.log" \
    || { fail "verify: vfio nvme write failed ($(first_line "$OUT/verify-ours-write.log"))"; return 1; }
  vfio unbind "$bdf" --driver nvme > "$OUT/verify-unbind.log" 2>&1 \
    || { fail "verify: vfio unbind $bdf --driver nvme failed ($(first_line "$OUT/verify-unbind.log"))"; return 1; }
  blk="$(blockdev_of "$bdf")" || { fail "verify: $bdf has no block device back on the nvme driver"; return 1; }
  say "verify: the kernel reads them back from $blk (dd iflag=direct)"
  dd if="$blk" of=/tmp/verify-kernel-read.bin bs=1M count="$size2" iflag=direct,count_bytes status=none \
    || { fail "verify: dd from $blk failed"; return 1; }
  cmp /tmp/verify-ours-wrote.bin /tmp/verify-kernel-read.bin >&2 \
    || { fail "verify: what the kernel read differs from what ours wrote"; return 1; }
  note "verify: ours wrote $size2 bytes, the kernel read them back (dd iflag=direct): identical"

  vfio bind "$bdf" > "$OUT/verify-bind2.log" 2>&1 || { fail "verify: vfio bind $bdf failed again"; return 1; }
  run_perf verify-randrw "$bdf" - "$OUT/cpu-verify-randrw.txt" \
    -w randrw -o 4096 -q 32 -c 1 -t "$SECS" --ramp "$RAMP" --api async --verify || return 1
  perf_field "$OUT/verify-randrw.json" reads || return 1; local reads="$PERF_FIELD"
  perf_field "$OUT/verify-randrw.json" writes || return 1
  note "verify: vfio nvme perf -w randrw --verify on the file-backed namespace: $reads reads, $PERF_FIELD writes, 0 mismatches"
}
data_check
rm -f /tmp/verify-*.bin

# ================================================================================================ report

{
  echo "nvme bench: ${SECS} s measured after ${RAMP} s ramp per run, one queue, one job; guest $(uname -r), $(nproc) vCPUs"
  printf '%-18s %-18s %10s %9s %9s %9s %8s %9s %9s\n' side workload IOPS p50_us p99_us CPU-s/M irq/IO SQdb/IO CQdb/IO
  awk -F'\t' '{ printf "%-18s %-18s %10s %9s %9s %9s %8s %9s %9s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9 }' "$RUNS"
  echo "CPU-s/M: busy CPU-seconds of the whole guest (/proc/stat) per million I/Os; irq/IO: the kernel's nvme interrupts per I/O;"
  echo "SQdb/IO, CQdb/IO: our submission and completion doorbell writes per I/O"
  sed 's/^/  /' "$NOTES"
} > "$OUT/result"

if [ -s "$FAILURES" ]; then
  { echo "FAILED:"; sed 's/^/  /' "$FAILURES"; } >> "$OUT/result"
  exit 1
fi
best=0
for side in kernel-irq kernel-poll kernel-sqpoll kernel-poll-notime; do
  v="$(run_value "$side" randread-4k-qd32 3)"
  awk -v v="$v" -v b="$best" 'BEGIN { exit !(v > b) }' && best="$v"
done
async="$(run_value ours-async randread-4k-qd32 3)" raw="$(run_value ours-raw randread-4k-qd32 3)"
# Every run passed, so every value is there and above 0; checked once more, since a ratio must never come from a gap.
positive "$async" && positive "$raw" && positive "$best" || { echo "FAILED: a randread-4k-qd32 figure is missing" >> "$OUT/result"; exit 1; }
awk -v a="$async" -v r="$raw" -v k="$best" \
  'BEGIN { printf "nvme-randread-qd32 ours_async=%d ours_raw=%d kernel_best=%d ratio=%.2f\n", a, r, k, a / k }' >> "$OUT/result"
