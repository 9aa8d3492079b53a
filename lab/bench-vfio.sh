# Sourced by the guest halves of the benchmarks (bench-nvme.sh, bench-net.sh): the vfio command built beside the
# tests (as the e2e suite runs it), through dotnet, and a reader for its --json documents.
VFIO_DLL="$PWD/src/Vfio.Cli/bin/${CONFIG:-Release}/net10.0/vfio.dll"
[ -f "$VFIO_DLL" ] || { echo "bench: $VFIO_DLL is missing; build first (./run bench does)" >&2; exit 1; }
vfio() { dotnet "$VFIO_DLL" "$@"; }
# A number of an indented JSON document (one field a line: vfio's --json, and fio's, which puts a space before the
# colon), the first field of that name; nothing when the field is absent or null.
json_number() { sed -n "s/^ *\"$2\" *: *\(-\{0,1\}[0-9][0-9.eE+-]*\),\{0,1\}\$/\1/p" "$1" | head -n 1; }
