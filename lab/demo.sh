#!/bin/bash
# Runs inside a lab guest in No-IOMMU mode (lab.sh demo): the vfio command at work, step by step, then what the
# kernel logged about No-IOMMU mode, then a summary table. Exits 0 only when every step that ran worked.
#
#   lab/demo.sh [--color]
#
# Each step shows the command as a user would type it and its output. The whole output is also kept in
# $VFIO_LAB_OUT/demo.log and the summary in $VFIO_LAB_OUT/demo-summary.txt (one "step<TAB>result<TAB>seconds" a line).
set -uo pipefail
: "${VFIO_LAB_EDU:?}" "${VFIO_LAB_NVME:?}" "${VFIO_LAB_NET0:?}" "${VFIO_LAB_NET1:?}" "${VFIO_LAB_OUT:?}"
EDU="$VFIO_LAB_EDU" NVME="$VFIO_LAB_NVME" NET0="$VFIO_LAB_NET0" NET1="$VFIO_LAB_NET1"
CONFIGURATION="${CONFIG:-Release}"
BIN="$PWD/src/Vfio.Cli/bin/$CONFIGURATION/net10.0"
LOG="$VFIO_LAB_OUT/demo.log"
SUMMARY="$VFIO_LAB_OUT/demo-summary.txt"
: > "$LOG"; : > "$SUMMARY"

if [ "${1:-}" = --color ]; then
  B=$'\e[1m' DIM=$'\e[2m' GREEN=$'\e[32m' RED=$'\e[31m' YELLOW=$'\e[33m' CYAN=$'\e[36m' R=$'\e[0m'
else
  B="" DIM="" GREEN="" RED="" YELLOW="" CYAN="" R=""
fi

# The command as users run it: the apphost (the kernel then logs its opens as "vfio"), else through dotnet.
if [ -x "$BIN/vfio" ]; then
  export PATH="$BIN:$PATH"
else
  [ -f "$BIN/vfio.dll" ] || { echo "demo: $BIN/vfio.dll is missing; build first (./run demo does)" >&2; exit 1; }
  vfio() { dotnet "$BIN/vfio.dll" "$@"; }
fi

say() { printf '%s\n' "$*" | tee -a "$LOG"; }
STEP_NAMES=() STEP_RESULTS=() STEP_TIMES=()
TOTAL_STEPS=11
n=0

heading() { # title
  n=$((n + 1))
  say ""
  say "${B}${CYAN}==== [$n/$TOTAL_STEPS] $1 ====${R}"
}

record() { # name result seconds
  STEP_NAMES+=("$1") STEP_RESULTS+=("$2") STEP_TIMES+=("$3")
  printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$SUMMARY"
}

# step NAME EXPECTED_EXIT -- COMMAND...: prints "$ COMMAND", runs it (output shown and logged), records the result.
# Standard output goes through a pipe, so tables are laid out for a wide page and perf prints a line a second.
step() {
  local name="$1" expect="$2"; shift 3
  heading "$name"
  say "${B}\$ $*${R}"
  local t0 rc secs
  t0="$(date +%s.%N)"
  "$@" 2>&1 | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  secs="$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
  LAST_RC=$rc
  if [ "$rc" -eq "$expect" ]; then
    say "${GREEN}-> ok (exit $rc, ${secs} s)${R}"
    record "$name" passed "$secs"
  else
    say "${RED}-> FAILED: exit $rc, expected $expect (${secs} s)${R}"
    record "$name" FAILED "$secs"
  fi
}

say "${B}vfio demo: the vfio command inside a QEMU guest whose kernel runs VFIO in No-IOMMU mode${R}"
say "Devices: edu $EDU (QEMU's teaching device), nvme $NVME (QEMU NVMe, serial VFIOLAB0001, 256 MiB file),"
say "         virtio-net $NET0 and $NET1 (modern virtio-net-pci on one QEMU hub)."
say "Kernel: $(uname -r); vfio.enable_unsafe_noiommu_mode=$(cat /sys/module/vfio/parameters/enable_unsafe_noiommu_mode 2>/dev/null || echo '?')"

step "noiommu status" 0 -- vfio noiommu status
step "list devices" 0 -- vfio list
# The two virtio-net ports start on the kernel's virtio_net driver; bind moves them to vfio-pci.
step "bind edu + nvme + 2 net ports to vfio-pci" 0 -- vfio bind "$EDU" "$NVME" "$NET0" "$NET1"
step "info without --unsafe-noiommu is refused" 4 -- vfio info "$EDU"
step "info on edu (No-IOMMU acknowledged)" 0 -- vfio info "$EDU" --unsafe-noiommu
step "nvme identify" 0 -- vfio nvme identify "$NVME" --unsafe-noiommu
step "nvme write --verify" 0 -- vfio nvme write "$NVME" --lba 4096 --count 64 --pattern 0x5a --verify --unsafe-noiommu
write_sha="$(tail -n 40 "$LOG" | sed -n 's/^sha256 //p' | tail -n1)"
step "nvme read back" 0 -- vfio nvme read "$NVME" --lba 4096 --count 64 --unsafe-noiommu
read_sha="$(tail -n 40 "$LOG" | sed -n 's/^sha256 //p' | tail -n1)"
if [ "$LAST_RC" -eq 0 ]; then
  if [ -n "$write_sha" ] && [ "$write_sha" = "$read_sha" ]; then
    say "${GREEN}read back the written data: sha256 ${read_sha:0:16}... on both sides${R}"
  else
    say "${RED}the data read back differs from what was written (sha256 '$write_sha' vs '$read_sha')${R}"
    STEP_RESULTS[${#STEP_RESULTS[@]}-1]=FAILED
    sed -i '$ s/\tpassed\t/\tFAILED\t/' "$SUMMARY"
  fi
fi
step "nvme perf (3 s)" 0 -- vfio nvme perf "$NVME" -q 32 -t 3 --unsafe-noiommu
step "nvme smart-log (what nvme-cli showed under the kernel)" 0 -- vfio nvme smart-log "$NVME" --unsafe-noiommu
step "nvme get-feature: volatile write cache" 0 -- vfio nvme get-feature "$NVME" -f 6 --unsafe-noiommu
step "nvme list (every controller, whichever driver has it)" 0 -- vfio nvme list --unsafe-noiommu

# ------------------------------------------------------------------------------------------------------------------
# PACKET FORWARD: io-forwarding between the two virtio-net ports (bound above), both ways on one thread, through
# the userspace virtio-net driver; the two ports share one VFIO container and one packet pool.
step "net fwd (3 s)" 0 -- vfio net fwd "$NET0" "$NET1" -t 3 --unsafe-noiommu
# ------------------------------------------------------------------------------------------------------------------

heading "what the kernel logged about No-IOMMU mode (dmesg)"
say "${B}\$ dmesg | grep -E 'Adding kernel taint for vfio-noiommu group on device|vfio-noiommu device opened by user'${R}"
t0="$(date +%s.%N)"
kernel="$(dmesg 2>&1 | grep -E 'Adding kernel taint for vfio-noiommu group on device|vfio-noiommu device opened by user' || true)"
printf '%s\n' "$kernel" | tee -a "$LOG"
tainted="$(cat /proc/sys/kernel/tainted)"
say "/proc/sys/kernel/tainted = $tainted$( [ $((tainted & 64)) -ne 0 ] && echo " (includes 64: TAINT_USER, 'U', which vfio-noiommu sets)")"
secs="$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
if grep -q 'Adding kernel taint for vfio-noiommu group on device' <<< "$kernel" \
   && grep -q 'vfio-noiommu device opened by user' <<< "$kernel"; then
  say "${GREEN}-> ok: the kernel tainted itself for each No-IOMMU group and logged every open${R}"
  record "kernel taint + open log" passed "$secs"
else
  say "${RED}-> FAILED: the taint or the 'opened by user' lines are missing from dmesg${R}"
  record "kernel taint + open log" FAILED "$secs"
fi

# ------------------------------------------------------------------------------------------------------------------
say ""
say "${B}==== summary ====${R}"
failed=0 passed=0
printf '%-45s %-8s %8s\n' STEP RESULT SECONDS | tee -a "$LOG"
for i in "${!STEP_NAMES[@]}"; do
  result="${STEP_RESULTS[$i]}" color=""
  case "$result" in
    passed) color="$GREEN"; passed=$((passed + 1)) ;;
    FAILED) color="$RED"; failed=$((failed + 1)) ;;
    *) color="$YELLOW" ;;
  esac
  printf '%-45s %s%-8s%s %8s\n' "${STEP_NAMES[$i]}" "$color" "$result" "$R" "${STEP_TIMES[$i]}" | tee -a "$LOG"
done
if [ "$failed" -eq 0 ]; then
  say "${GREEN}${B}demo: all $passed steps that ran passed${R}"
  exit 0
fi
say "${RED}${B}demo: $failed of $((passed + failed)) steps FAILED${R} (output in $LOG)"
exit 1
