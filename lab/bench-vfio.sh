# Sourced by the guest halves of the benchmarks (bench-nvme.sh, bench-net.sh, bench-net-igb.sh): the vfio command built beside the
# tests (as the e2e suite runs it), through dotnet, a reader for its --json documents, and the statistics of rounds.
VFIO_DLL="$PWD/src/Vfio.Cli/bin/${CONFIG:-Release}/net10.0/vfio.dll"
[ -f "$VFIO_DLL" ] || { echo "bench: $VFIO_DLL is missing; build first (./run bench does)" >&2; exit 1; }
vfio() { dotnet "$VFIO_DLL" "$@"; }
# A number of an indented JSON document (one field a line: vfio's --json, and fio's, which puts a space before the
# colon), the first field of that name; nothing when the field is absent or null.
json_number() { sed -n "s/^ *\"$2\" *: *\(-\{0,1\}[0-9][0-9.eE+-]*\),\{0,1\}\$/\1/p" "$1" | head -n 1; }
# The median of the numbers given (4 decimals; 0.0000 for none).
median() { echo "$@" | tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{ v[NR] = $1 }
  END { if (NR == 0) { printf "0.0000"; exit } ; printf "%.4f", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
spread() { # values... -> "(max - min) / median" in percent
  local m; m="$(median "$@")"
  echo "$@" | awk -v m="$m" '{ lo = $1; hi = $1; for (i = 2; i <= NF; i++) { if ($i < lo) lo = $i; if ($i > hi) hi = $i }
    printf "%.0f%% (%s..%s)", (m > 0 ? (hi - lo) / m * 100 : 0), lo, hi }'
}
# Hands a PCI function to vfio-pci through driver_override (as PciHost.BindToVfio does); one vfio-pci has already is
# left alone (an unbind would block until whoever holds the device lets go).
bind_vfio() {
  local d=/sys/bus/pci/devices/$1
  [ "$(basename "$(readlink "$d/driver" 2>/dev/null)" 2>/dev/null)" = vfio-pci ] && return 0
  echo vfio-pci > "$d/driver_override"
  [ -e "$d/driver" ] && echo "$1" > "$d/driver/unbind"
  echo "$1" > /sys/bus/pci/drivers/vfio-pci/bind
}
# dpdk-testpmd with the arguments after the first two, its output in $1, for $SECS seconds of forwarding: its
# start-up (EAL, port init) takes seconds under TCG and more when the host is busy, so the clock starts at its first
# statistics report (polled every 0.2 s, at most $2 times) and SIGINT ends it SECS seconds later.
testpmd_timed() { # log max-polls testpmd-args...
  local log="$1" max="$2"; shift 2
  stdbuf -oL dpdk-testpmd "$@" < /dev/null > "$log" 2>&1 &
  local pid=$! waited=0
  until grep -q 'Port statistics' "$log" 2>/dev/null || ! kill -0 "$pid" 2>/dev/null || [ "$waited" -ge "$max" ]; do
    sleep 0.2; waited=$((waited + 1))
  done
  sleep "$SECS"
  kill -INT "$pid" 2>/dev/null
  wait "$pid"
}
# Both directions within 20% of each other: "a b" -> true (a stalled direction would otherwise hide in the total).
balanced() { awk -v a="$1" -v b="$2" 'BEGIN { hi = a > b ? a : b; lo = a > b ? b : a; exit !(hi > 0 && lo > 0 && (hi - lo) / hi <= 0.20) }'; }
# testpmd's log -> "total port0-tx port1-tx" in Mpps: per-second Tx-pps of each port (its reports alternate port 0,
# port 1), the first report of each left out (forwarding had not begun).
testpmd_rates() { # log
  sed 's/\x1b\[[0-9;]*[A-Za-z]//g' "$1" | awk '
    /Tx-pps:/ { for (i = 1; i <= NF; i++) if ($i == "Tx-pps:") v = $(i + 1); p = n % 2; n++; k[p]++;
                if (k[p] > 1) { s[p] += v; m[p]++ } }
    END { if (m[0] == 0 || m[1] == 0) exit 1; a = s[0] / m[0] / 1e6; b = s[1] / m[1] / 1e6;
          if (a + b <= 0) exit 1; printf "%.4f %.4f %.4f", a + b, a, b }'
}
# vfio net fwd's --json report -> "total aToB bToA" in Mpps: the steady rate, split by the directions' shares of the
# whole run's counts.
fwd_rates() { # json
  local v a b
  v="$(json_number "$1" steadyMpps)" a="$(json_number "$1" aToB)" b="$(json_number "$1" bToA)"
  [ -n "$v" ] && [ -n "$a" ] && [ -n "$b" ] && awk -v v="$v" -v a="$a" -v b="$b" 'BEGIN { exit !(v > 0 && a + b > 0) }' || return 1
  awk -v v="$v" -v a="$a" -v b="$b" 'BEGIN { printf "%.4f %.4f %.4f", v, v * a / (a + b), v * b / (a + b) }'
}
# Interactive dpdk-testpmd (the arguments after the first three, without -i), its output in $1: once its prompt is up,
# `start tx_first BURSTS` (BURSTS bursts per port before forwarding: with the ring's size in flight the rings stay
# full), a second of warm-up, then `show port stats all` once a second for $SECS seconds (the first report, whose
# rates testpmd cannot know yet, is the baseline testpmd_rates leaves out), then stop (the accumulated forward
# statistics) and quit. Commands go in through a FIFO that stays open until the end.
testpmd_filled() { # log max-polls bursts testpmd-args...
  local log="$1" max="$2" bursts="$3"; shift 3
  local fifo; fifo="$(mktemp -u /tmp/testpmd-cmd.XXXXXX)"
  mkfifo "$fifo" || return 1
  stdbuf -oL dpdk-testpmd "$@" -i < "$fifo" > "$log" 2>&1 &
  local pid=$! waited=0 s
  exec 9> "$fifo"
  until grep -q 'testpmd>' "$log" 2>/dev/null || ! kill -0 "$pid" 2>/dev/null || [ "$waited" -ge "$max" ]; do
    sleep 0.2; waited=$((waited + 1))
  done
  echo "start tx_first $bursts" >&9
  sleep 1
  echo "show port stats all" >&9
  for s in $(seq 1 "$SECS"); do sleep 1; echo "show port stats all" >&9; done
  echo "stop" >&9
  sleep 0.5
  echo "quit" >&9
  exec 9>&-
  rm -f "$fifo"
  wait "$pid"
}
# testpmd's log -> the packets it sent on all ports ("Accumulated forward statistics" after stop).
testpmd_tx_total() { # log
  sed 's/\x1b\[[0-9;]*[A-Za-z]//g' "$1" | awk '/Accumulated forward statistics/ { a = 1 } a && /TX-packets:/ { print $2; exit }'
}
# One QMP command in this guest's QEMU through lab/qmp-bridge.py (request and answer files in $VFIO_LAB_QMP); prints
# the answer, fails on a QMP error or no answer within 30 s.
qmp() { # name json
  local req="$VFIO_LAB_QMP/req-bench-$1.json" resp="$VFIO_LAB_QMP/resp-bench-$1.json" waited=0
  echo "$2" > "$VFIO_LAB_QMP/.tmp-bench-$1" && mv "$VFIO_LAB_QMP/.tmp-bench-$1" "$req" || return 1
  until [ -f "$resp" ]; do
    [ "$waited" -ge 300 ] && { echo "bench: no QMP answer to $1 within 30 s" >&2; return 1; }
    sleep 0.1; waited=$((waited + 1))
  done
  local answer; answer="$(cat "$resp")"; rm -f "$resp"
  echo "$answer"
  [[ "$answer" != *'"error"'* ]]
}
# Switches QEMU trace events on or off (QMP trace-event-set-state; names may be patterns).
qemu_trace() { # on|off event...
  local state=false e; [ "$1" = on ] && state=true; shift
  for e in "$@"; do
    qmp "trace-$e-$state" "{\"execute\":\"trace-event-set-state\",\"arguments\":{\"name\":\"$e\",\"enable\":$state}}" > /dev/null || return 1
  done
}
