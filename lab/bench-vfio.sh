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
