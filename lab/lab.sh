#!/usr/bin/env bash
# The guest lab: boots Debian 6.1 guests under QEMU/TCG with the vfio modules rebuilt for
# No-IOMMU mode, runs commands (the .NET end-to-end tests) inside them and brings results back.
#
#   lab.sh prepare                                   install/build/cache everything a boot needs
#   lab.sh run CONFIG [--timeout S] [--out DIR] [--log FILE] [--quiet] -- COMMAND...
#                                                    boot one guest, run COMMAND, return its exit code
#   lab.sh e2e OUTDIR                                every config runs the e2e tests, in parallel lanes;
#                                                    OUTDIR/<config>.log
#   lab.sh shell CONFIG                              interactive guest (a bash in the host root)
#   lab.sh bench lab                                 time a whole e2e lab run
#   lab.sh bench nvme                                the kernel's nvme driver (fio io_uring: interrupts, polled,
#                                                    SQ thread) vs ours (vfio nvme perf, raw and async API) on a
#                                                    null-co nvme, and a data check on a file-backed one (lab/bench-nvme.sh)
#   lab.sh bench net [igb]                           virtio-net (or igb: two 82576 ports on QEMU 10) io-forward:
#                                                    DPDK testpmd vs ours
#   lab.sh demo                                      the vfio command in a No-IOMMU guest, step by step
#                                                    (lab/demo.sh); output in artifacts/demo/
#
# Configurations: noiommu (i440fx, vfio enable_unsafe_noiommu_mode=1), type1 (q35 + intel-iommu),
# noiommu-off (i440fx, vfio loaded with the No-IOMMU parameter off), igb (q35 without a vIOMMU, No-IOMMU groups, QEMU
# 10 with two Intel 82576 ports and two NUMA nodes, running the igb and NUMA tests only: QEMU 7.2 has no igb model), all on Debian's 6.1 kernel; and on
# a 6.12 kernel built from Debian's source with everything built in (lab/kernel-6.12.config):
# 612-noiommu (i440fx, No-IOMMU groups), 612-iommufd (q35 + intel-iommu: the library opens devices
# through the VFIO device cdev + iommufd), 612-type1 (the same guest with VFIO_DOTNET_MODE=type1,
# which forces the group + type1 container); and on the second 6.12 build (lab/kernel-6.12-compat.config),
# whose /dev/vfio/vfio iommufd serves: 612-compat-noiommu (i440fx, No-IOMMU groups) and 612-compat-type1
# (q35 + intel-iommu, VFIO_DOTNET_MODE=type1: the group path through iommufd's type1 emulation).
# A 6.12 guest runs the e2e tests of its family (noiommu or type1) and those written for it alone
# (trait lab=<its name>).
#
# Guest devices, at the same PCI addresses in every configuration (slots 04-08 on bus 0; on q35
# they are root-complex integrated, so the BDFs are the same as on i440fx):
#   VFIO_LAB_EDU   0000:00:04.0  QEMU edu, the device under test (no kernel driver)
#   VFIO_LAB_EDU2  0000:00:05.0  QEMU edu, left alone (for "device not bound" tests)
#   VFIO_LAB_NVME  0000:00:06.0  nvme, 256 MiB raw file created per run, serial VFIOLAB0001
#   VFIO_LAB_NET0  0000:00:07.0  virtio-net-pci, modern only, hub 0 port p0
#   VFIO_LAB_NET1  0000:00:08.0  virtio-net-pci, modern only, hub 0 port p1
#   VFIO_LAB_NVME3 0000:00:0a.0  e2e on noiommu only (VFIO_LAB_NVME_SUBSYS=1): nvme in subsystem vfio-lab-subsys3,
#                                serial VFIOLAB0003, nsid 1 attached and nsid 2 detached (16 MiB each)
#   VFIO_LAB_IGB0  0000:00:0c.0  VFIO_LAB_IGB=1 with VFIO_LAB_QEMU=10 (0b.0 in the igb config, q35): Intel 82576, hub 1 port g0,
#                                MAC 52:54:00:00:01:01
#   VFIO_LAB_IGB1  0000:00:0e.0  the same (0d.0 in the igb config), hub 1 port g1, MAC 52:54:00:00:01:02 (no host-side netdev on hub 1 either)
#   VFIO_LAB_NVME2 0000:00:09.0  bench nvme only: a second nvme, 128 MiB raw file, serial VFIOLAB0002 (the data check
#                                while VFIO_LAB_NVME is null-co)
#   VFIO_LAB_NVME_AER 0000:01:00.0  q35 guests with VFIO_LAB_AER=1 only: an nvme (32 MiB raw file, serial VFIOLAB0004)
#                                behind pcie-root-port 00:13.0 (QOM id nvmeaer); QEMU's nvme has no AER capability
#   VFIO_LAB_NET_AER 0000:02:00.0   q35 guests with VFIO_LAB_AER=1 only: virtio-net-pci with aer=on (an AER capability)
#                                behind pcie-root-port 00:14.0 (QOM id netaer), hub 0 port p2 (frames reach NET0/NET1);
#                                errors are injected with QMP human-monitor-command "pcie_aer_inject_error netaer ..."
#   VFIO_LAB_NVME_NUMA 0000:41:00.0  igb config only (VFIO_LAB_NUMA=1): an nvme (32 MiB raw file, serial VFIOLAB0005)
#                                behind a pxb-pcie on NUMA node 1 (slot 15) and its root port 40:00.0: numa_node 1
#   (00:10.0-00:12.0 are the 9p shares the lab itself uses: host root, run dir, output dir.)
#
# Exit codes of `run`: COMMAND's own, or 124 when the guest timed out, 125 when the lab failed
# (QEMU error, guest panic, init failure): those print the last console lines.
#
# Environment: VFIO_LAB_CACHE (default /var/cache/vfio-dotnet-lab), VFIO_LAB_TIMEOUT (seconds per
# e2e boot, default 1500: the noiommu guest, which also runs the nvme-cli cross-check, takes about 875 s on 2 busy cores), VFIO_LAB_KERNEL_ABI (pin a kernel ABI, e.g. 6.1.0-56-amd64),
# VFIO_LAB_JOBS (e2e guests at a time, default one per core up to 4), VFIO_LAB_CONFIGS (e2e: only these
# configurations, space-separated), CONFIG (build configuration of the test project, default Release).
# QEMU: the 6.12 guests and igb boot on QEMU 10.0 from bookworm-backports, extracted into the cache; noiommu, type1
# and noiommu-off on the system's 7.2 (lab/README.md, "QEMU"); VFIO_LAB_QEMU=7 or 10 puts them all on one (igb stays on 10).
# VFIO_LAB_IGB=1 (with QEMU 10): two igb ports at 0c.0/0e.0,
# exported as VFIO_LAB_IGB0/VFIO_LAB_IGB1 (lab/README.md, "igb").
set -euo pipefail

LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$LAB_DIR/.." && pwd)"
CACHE="${VFIO_LAB_CACHE:-/var/cache/vfio-dotnet-lab}"
CONFIGS=(noiommu type1 noiommu-off igb 612-noiommu 612-iommufd 612-type1 612-compat-noiommu 612-compat-type1)
INIT_SCRIPT="$LAB_DIR/guest-init.sh"
KBUILD_FILE="$LAB_DIR/vfio-noiommu.kbuild"

# PCI slots (hex) of the guest devices; the BDFs exported to commands derive from these.
SLOT_EDU=04 SLOT_EDU2=05 SLOT_NVME=06 SLOT_NET0=07 SLOT_NET1=08 SLOT_NVME2=09 SLOT_NVME3=0a SLOT_IGB0=0c SLOT_IGB1=0e
# VFIO_LAB_AER=1 (q35 only): two pcie-root-ports; the guest numbers their secondary buses 1 and 2 in slot order
# (nothing else on q35's bus 0 is a bridge), so the devices behind them are 01:00.0 and 02:00.0.
SLOT_AER_PORT1=13 SLOT_AER_PORT2=14 BDF_NVME_AER=0000:01:00.0 BDF_NET_AER=0000:02:00.0
# VFIO_LAB_NUMA=1 (the igb configuration): a PCIe expander bridge on node 1 at slot 15 opens root bus 0x40, its root
# port 40:00.0 leads to bus 0x41, where an nvme sits.
SLOT_PXB_NUMA=15 BDF_NVME_NUMA=0000:41:00.0
SLOT_9P_HOST=10 SLOT_9P_LAB=11 SLOT_9P_OUT=12

log() { printf 'lab: %s\n' "$*" >&2; }
die() { printf 'lab: error: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }  # since start time
short_hash() { sha256sum | cut -c1-16; }

# =================================================================================================
# prepare: packages, guest kernel, vfio modules, module tree, initramfs. All cached under $CACHE.
# =================================================================================================

# QEMU for the guests (issue 19): bookworm-backports' QEMU 10.0 (it has the igb NIC model and NVMe Namespace
# Management), pinned to one version and extracted into the lab cache beside the system's 7.2, so both stay usable
# and nothing else upgrades. The one-vCPU guests (the five 6.12 ones) and igb (one TCG thread) boot on it; the
# three 6.1 guests with two vCPUs on a TCG thread each (noiommu, type1, noiommu-off) stay on Debian 12's 7.2: under
# TCG on 2 busy cores 10.0.2 aborted such a guest (iotlb_to_section assertion) or stalled its second vCPU's timer
# (RCU stalls) in four runs of 2026-12-06/07, while 7.2 has passed them in every CI run (lab/README.md, "QEMU").
# VFIO_LAB_QEMU=7 or 10 puts every configuration on that one (igb needs 10).
QEMU_BIN=qemu-system-x86_64
QEMU10_VERSION="${VFIO_LAB_QEMU10_VERSION:-1:10.0.2+ds-2+deb13u1~bpo12+1}"
QEMU10_SEABIOS="${VFIO_LAB_QEMU10_SEABIOS:-1.16.3-2~bpo12+1}"
QEMU10_DIR="$CACHE/qemu-$(printf '%s' "$QEMU10_VERSION" | sed 's/[^A-Za-z0-9.]/_/g')"
# Downloads and extracts the pinned QEMU 10 into the cache unless it is there.
fetch_qemu10() {
  local dir="$QEMU10_DIR"
  [ ! -x "$dir/usr/bin/qemu-system-x86_64" ] || return 0
  ensure_backports_source
  local t="$CACHE/.tmp.qemu.$$" p
  rm -rf "$t"; mkdir -p "$t/debs"; chown _apt "$t/debs" 2>/dev/null || true   # apt-get download runs as _apt
  log "fetching QEMU $QEMU10_VERSION from bookworm-backports into $dir"
  ( cd "$t/debs" && apt-get download -qq "qemu-system-x86=$QEMU10_VERSION" "qemu-system-common=$QEMU10_VERSION" \
      "qemu-system-data=$QEMU10_VERSION" "seabios=$QEMU10_SEABIOS" >&2 ) \
    || die "cannot download QEMU $QEMU10_VERSION (is bookworm-backports reachable? set VFIO_LAB_QEMU10_VERSION)"
  for p in "$t"/debs/*.deb; do dpkg-deb -x "$p" "$t/root" || die "cannot extract $p"; done
  rm -rf "$dir"; mv "$t/root" "$dir"; rm -rf "$t"
}
# Points QEMU_BIN (and its modules and firmware) at QEMU 7 (the system's) or 10 (the cache's, fetched first).
use_qemu() { # 7|10
  if [ "$1" = 10 ]; then
    [ -x "$QEMU10_DIR/usr/bin/qemu-system-x86_64" ] || die "QEMU 10 is not in the cache ($QEMU10_DIR): lab.sh prepare fetches it"
    QEMU_BIN="$QEMU10_DIR/usr/bin/qemu-system-x86_64"
    # its own modules and firmware, never the system 7.2's ("Only modules from the same build can be loaded")
    export QEMU_MODULE_DIR="$QEMU10_DIR/usr/lib/x86_64-linux-gnu/qemu"
    QEMU_DATA_ARGS=(-L "$QEMU10_DIR/usr/share/qemu" -L "$QEMU10_DIR/usr/share/seabios")
  else
    QEMU_BIN=qemu-system-x86_64
    unset QEMU_MODULE_DIR
    QEMU_DATA_ARGS=()
  fi
}
# What prepare must add for configuration $1: QEMU 10 (PREPARE_QEMU10), DPDK's testpmd for igb (PREPARE_IGB).
needs_for() { # config
  if [ "$(qemu_of "$1")" = 10 ]; then export PREPARE_QEMU10=1; fi
  if [ "$1" = igb ]; then export PREPARE_IGB=1; fi
}
# The QEMU a configuration boots on: VFIO_LAB_QEMU if set (igb always 10: 7.2 has no igb model), else 10 for the
# 6.12 guests and igb, 7 for the two-vCPU 6.1 guests.
qemu_of() { # config
  if [ "$1" = igb ]; then echo 10
  elif [ -n "${VFIO_LAB_QEMU:-}" ]; then echo "$VFIO_LAB_QEMU"
  elif [[ "$1" == 612-* ]]; then echo 10
  else echo 7; fi
}
QEMU_DATA_ARGS=()

# tcpdump, iperf3, ping and ip: the guests run the host's root over 9p, and the TAP and capture e2e tests
# (tests/Vfio.E2E.Tests/NetTapTests.cs) use them there.
HOST_PACKAGES=(qemu-system-x86 busybox-static cpio kmod linux-source-6.1 make gcc xz-utils gzip nvme-cli python3 tcpdump iperf3
  iputils-ping iproute2)
APT_UPDATED=0

pkg_installed() { # package -> true when dpkg says it is installed
  [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]
}
pkg_version() { dpkg-query -W -f='${Version}' "$1"; }
upstream() { local v="${1#*:}"; echo "${v%-*}"; }   # 1:6.1.192-2 -> 6.1.192

apt_update_once() {
  [ "$APT_UPDATED" = 1 ] && return 0
  log "apt-get update"
  apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 || die "apt-get update failed"
  APT_UPDATED=1
}

apt_install() { # packages...
  apt_update_once
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@" >&2 \
    || die "apt-get install $* failed"
}

# The guest kernel ABI (e.g. 6.1.0-56-amd64): the installed linux-headers-6.1.*-amd64 whose version
# equals the installed linux-source-6.1's, so a prepared machine needs no apt work at all.
installed_abi() {
  pkg_installed linux-source-6.1 || return 0
  local src; src="$(pkg_version linux-source-6.1)"
  dpkg-query -W -f='${Package} ${Version} ${db:Status-Abbrev}\n' 'linux-headers-6.1.*-amd64' 2>/dev/null \
    | awk -v v="$src" '$2 == v && $3 == "ii" { sub("^linux-headers-", "", $1); print $1 }' \
    | sort -V | tail -n1 || true   # none installed yet (an interrupted first prepare): the caller picks one
}

ensure_packages() {
  local missing=() p
  for p in "${HOST_PACKAGES[@]}"; do pkg_installed "$p" || missing+=("$p"); done
  [ "${#missing[@]}" -eq 0 ] || apt_install "${missing[@]}"

  KABI="${VFIO_LAB_KERNEL_ABI:-$(installed_abi)}"
  if [ -z "$KABI" ]; then
    # Nothing matching yet: take the ABI Debian's linux-headers-amd64 currently points at.
    apt_update_once
    KABI="$(apt-cache depends linux-headers-amd64 2>/dev/null \
      | sed -n 's/^ *Depends: linux-headers-\(6\.1\.[^ ]*-amd64\)$/\1/p' | head -n1)"
    [ -n "$KABI" ] || die "cannot find which 6.1 kernel linux-headers-amd64 depends on (apt-cache)"
    apt_install linux-source-6.1 "linux-headers-$KABI"
  fi
  pkg_installed "linux-headers-$KABI" || apt_install "linux-headers-$KABI"
  [[ "$KABI" == 6.1.* ]] || die "the lab needs a 6.1 guest kernel, got ABI '$KABI'"

  SRC_VERSION="$(pkg_version linux-source-6.1)"
  HDR_VERSION="$(pkg_version "linux-headers-$KABI")"
  SRC_TARBALL=/usr/src/linux-source-6.1.tar.xz
  HEADERS=/usr/src/linux-headers-$KABI
  [ -f "$SRC_TARBALL" ] || die "$SRC_TARBALL is missing (reinstall linux-source-6.1)"
  [ -f "$HEADERS/Makefile" ] || die "$HEADERS is missing (reinstall linux-headers-$KABI)"
}

# The guest kernel image package, downloaded (not installed: the host's /boot stays untouched).
fetch_image_deb() {
  IMAGE_DEB="$CACHE/debs/linux-image-${KABI}_${HDR_VERSION}_amd64.deb"
  [ -f "$IMAGE_DEB" ] && return 0
  mkdir -p "$CACHE/debs"
  local tmp; tmp="$(mktemp -d "$CACHE/debs/.download.XXXXXX")"
  chown _apt "$tmp" 2>/dev/null || true   # apt-get download drops privileges to _apt
  log "downloading linux-image-$KABI=$HDR_VERSION"
  if ! (cd "$tmp" && apt-get download -qq "linux-image-$KABI=$HDR_VERSION" >&2); then
    apt_update_once
    (cd "$tmp" && apt-get download -qq "linux-image-$KABI=$HDR_VERSION" >&2) || {
      rm -rf "$tmp"
      die "cannot download linux-image-$KABI version $HDR_VERSION (the headers' version). If the" \
        "archive has moved on, install the current kernel headers and source:" \
        "apt-get install linux-headers-amd64 linux-source-6.1"
    }
  fi
  mv "$tmp"/linux-image-*.deb "$IMAGE_DEB"
  rm -rf "$tmp"
}

check_versions() {
  IMG_VERSION="$(dpkg-deb -f "$IMAGE_DEB" Version)"
  local i h s
  i="$(upstream "$IMG_VERSION")" h="$(upstream "$HDR_VERSION")" s="$(upstream "$SRC_VERSION")"
  if [ "$i" != "$h" ] || [ "$h" != "$s" ]; then
    die "guest kernel versions differ: linux-image-$KABI $IMG_VERSION, linux-headers-$KABI" \
      "$HDR_VERSION, linux-source-6.1 $SRC_VERSION. They must be the same upstream version:" \
      "apt-get install linux-headers-amd64 linux-source-6.1 (after apt-get update) to align them."
  fi
}

# Builds vfio, vfio_virqfd, vfio_iommu_type1, vfio-pci-core and vfio-pci with No-IOMMU compiled in,
# from the 6.1 source, against the guest kernel's headers. $1 = empty output directory.
build_vfio_modules() {
  local out="$1" work="$1/build"
  mkdir -p "$work/src"
  tar -xf "$SRC_TARBALL" -C "$work/src" --strip-components=1 \
    linux-source-6.1/drivers/vfio || die "cannot extract drivers/vfio from $SRC_TARBALL"
  mkdir -p "$work/m/pci"
  cp "$work"/src/drivers/vfio/*.[ch] "$work/m/"
  cp "$work"/src/drivers/vfio/pci/*.[ch] "$work/m/pci/"
  cp "$KBUILD_FILE" "$work/m/Kbuild"
  make -C "$HEADERS" M="$work/m" -j"$(nproc)" modules > "$out/build.log" 2>&1 \
    || { tail -n 30 "$out/build.log" >&2; die "building the vfio modules failed (log above)"; }
  local ko
  for ko in vfio vfio_virqfd vfio_iommu_type1 vfio-pci-core vfio-pci; do
    cp "$work/m/$ko.ko" "$out/" || die "the build produced no $ko.ko"
    strip --strip-debug "$out/$ko.ko"
  done
  modinfo -F parm "$out/vfio.ko" | grep -q '^enable_unsafe_noiommu_mode:' \
    || die "the rebuilt vfio.ko has no enable_unsafe_noiommu_mode parameter"
  rm -rf "$work"
}

# Runs "$2 <tmpdir>" and renames tmpdir to $1 when it succeeds: an interrupted step leaves no
# half-made entry behind, only a .tmp.* directory that the next prepare removes.
cache_step() { # final-path function [tmp-prefix]
  local final="$1" fn="$2" prefix="${3:-.tmp}"
  [ -e "$final" ] && return 0
  local tmp; tmp="$(mktemp -d "$CACHE/$prefix.XXXXXX")"
  "$fn" "$tmp"
  chmod 755 "$tmp"
  mv -T "$tmp" "$final"
}

# Guest root: the image package's /boot and /lib/modules, with our vfio modules in place of
# Debian's, and depmod run over it. $1 = empty directory.
make_kernel_tree() {
  local t="$1" mods="$1/lib/modules/$KABI"
  dpkg-deb -x "$IMAGE_DEB" "$t" || die "cannot extract $IMAGE_DEB"
  [ -f "$t/boot/vmlinuz-$KABI" ] || die "no boot/vmlinuz-$KABI in $IMAGE_DEB"
  local ko
  for ko in vfio vfio_virqfd vfio_iommu_type1; do cp "$VFIO_DIR/$ko.ko" "$mods/kernel/drivers/vfio/"; done
  for ko in vfio-pci-core vfio-pci; do cp "$VFIO_DIR/$ko.ko" "$mods/kernel/drivers/vfio/pci/"; done
  depmod -b "$t" "$KABI" || die "depmod failed on $t"
}

# Initramfs: static busybox, /init, and the modules needed to mount the host over 9p, in load
# order (kmod's modprobe --show-depends resolves them in the guest tree). $1 = empty directory.
make_initramfs() {
  local t="$1" r="$1/root" m kind path deps
  mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,lib/boot}
  cp /bin/busybox "$r/bin/busybox"
  cp "$INIT_SCRIPT" "$r/init"
  chmod 755 "$r/init"
  : > "$r/lib/boot/order"
  for m in ${INITRD_MODULES-virtio_pci 9pnet_virtio 9p}; do
    deps="$(modprobe -d "$KERNEL_DIR" -S "$KABI" --show-depends "$m")" || die "initramfs: cannot resolve $m"
    while read -r kind path _; do
      [ "$kind" = insmod ] || continue          # "builtin NAME" lines need nothing
      grep -qxF "$(basename "$path")" "$r/lib/boot/order" && continue
      cp "$path" "$r/lib/boot/"
      basename "$path" >> "$r/lib/boot/order"
    done <<< "$deps"
  done
  (cd "$r" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet) | gzip -1 > "$t/initramfs.gz"
  rm -rf "$r"
}

# -------------------------------------------------------------------------------------------------
# The second guest kernel: Debian's linux-source-6.12 built from source with everything in
# (lab/kernel-6.12.config), for the VFIO device cdev and iommufd (6.6+), and its uapi headers,
# which the unit tests' layout probe compiles against (linux-libc-dev on bookworm is 6.1 and has no
# linux/iommufd.h).
# -------------------------------------------------------------------------------------------------

K612_PACKAGES=(linux-source-6.12 bc bison flex libelf-dev libssl-dev make gcc xz-utils)
K612_FRAGMENT="$LAB_DIR/kernel-6.12.config"
K612_COMPAT_FRAGMENT="$LAB_DIR/kernel-6.12-compat.config"
K612_TARBALL=/usr/src/linux-source-6.12.tar.xz
K612_BACKPORTS=/etc/apt/sources.list.d/vfio-lab-bookworm-backports.sources

# bookworm-backports in a list of its own (backports are pinned low by apt: nothing else upgrades).
ensure_backports_source() {
  grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/ && { apt_update_once; return 0; }
  log "adding bookworm-backports ($K612_BACKPORTS)"
  printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\n' \
    > "$K612_BACKPORTS"
  APT_UPDATED=0
  apt_update_once
}

ensure_612_packages() {
  local missing=() p
  for p in "${K612_PACKAGES[@]}"; do pkg_installed "$p" || missing+=("$p"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    apt_update_once
    # bookworm gets linux-source-6.12 through bookworm-security; where the sources do not offer it,
    # add bookworm-backports in a list of its own (backports are pinned low: nothing else upgrades).
    if ! apt-cache policy linux-source-6.12 2>/dev/null | grep -q 'Candidate: [0-9]'; then
      ensure_backports_source
    fi
    apt_install "${missing[@]}"
  fi
  [ -f "$K612_TARBALL" ] || die "$K612_TARBALL is missing (reinstall linux-source-6.12)"
  K612_VERSION="$(pkg_version linux-source-6.12)"
}

# The uapi headers (make headers) of the 6.12 source. $1 = empty directory; leaves $1/include.
extract_612_headers() {
  local t="$1"
  mkdir -p "$t/src"
  tar -xf "$K612_TARBALL" -C "$t/src" --strip-components=1 || die "cannot extract $K612_TARBALL"
  # "make headers" is headers_install without its rsync copy: the tree's usr/include is the result.
  make -C "$t/src" ARCH=x86 headers > "$t/headers.log" 2>&1 \
    || { tail -n 20 "$t/headers.log" >&2; die "make headers of linux-source-6.12 failed"; }
  cp -a "$t/src/usr/include" "$t/include"
  find "$t/include" -name '.*' -type f -delete    # kbuild's .cmd files
  [ -f "$t/include/linux/iommufd.h" ] || die "the 6.12 headers have no linux/iommufd.h"
  rm -rf "$t/src"
}

# Fails naming every line of fragment $2 that olddefconfig dropped from $1/.config (a dependency Kconfig
# silently drops would otherwise go unnoticed).
check_fragment() { # src fragment
  local line missing=0
  while read -r line; do
    case "$line" in
      CONFIG_*=*) grep -qxF "$line" "$1/.config" || { log "6.12 config: '$line' did not stick"; missing=1; } ;;
      "# CONFIG_"*" is not set") grep -q "^${line:2:-11}=" "$1/.config" && { log "6.12 config: '$line' did not stick"; missing=1; } ;;
    esac
  done < "$2"
  [ "$missing" = 0 ] || die "the 6.12 kernel config lacks options of $2 (see above)"
}

# The two 6.12 kernels: defconfig + kvm_guest.config + our fragment (bzImage, VFIO's own container), then
# the compat fragment on top in the same tree (bzImage-compat, iommufd serving /dev/vfio/vfio): make only
# recompiles what the changed options reach (vfio, iommufd) and relinks.
# $1 = empty directory; leaves $1/bzImage, $1/config, $1/bzImage-compat, $1/config-compat and $1/build.log.
build_612_kernel() {
  local t="$1" src="$1/src"
  mkdir -p "$src"
  tar -xf "$K612_TARBALL" -C "$src" --strip-components=1 || die "cannot extract $K612_TARBALL"
  {
    make -C "$src" defconfig && make -C "$src" kvm_guest.config \
      && (cd "$src" && scripts/kconfig/merge_config.sh -m .config "$K612_FRAGMENT") \
      && make -C "$src" olddefconfig
  } > "$t/build.log" 2>&1 || { tail -n 30 "$t/build.log" >&2; die "configuring the 6.12 kernel failed"; }
  check_fragment "$src" "$K612_FRAGMENT"
  nice -n 10 make -C "$src" -j"$(nproc)" bzImage >> "$t/build.log" 2>&1 \
    || { tail -n 30 "$t/build.log" >&2; die "building the 6.12 kernel failed (log above)"; }
  cp "$src/arch/x86/boot/bzImage" "$t/bzImage"
  cp "$src/.config" "$t/config"
  {
    (cd "$src" && scripts/kconfig/merge_config.sh -m .config "$K612_COMPAT_FRAGMENT") && make -C "$src" olddefconfig
  } >> "$t/build.log" 2>&1 || { tail -n 30 "$t/build.log" >&2; die "configuring the 6.12 compat kernel failed"; }
  check_fragment "$src" "$K612_COMPAT_FRAGMENT"
  nice -n 10 make -C "$src" -j"$(nproc)" bzImage >> "$t/build.log" 2>&1 \
    || { tail -n 30 "$t/build.log" >&2; die "building the 6.12 compat kernel failed (log above)"; }
  cp "$src/arch/x86/boot/bzImage" "$t/bzImage-compat"
  cp "$src/.config" "$t/config-compat"
  rm -rf "$src"
}

# Sets K612_HEADERS (…/include) and, with "kernel", K612_INITRD; building what is missing. Runs
# under prepare's lock; the kernel itself is prepare_612_kernel's.
prepare_612() { # [kernel]
  ensure_612_packages
  local hkey
  hkey="$( { declare -f extract_612_headers; echo "$K612_VERSION"; } | short_hash)"
  local hdir="$CACHE/uapi-6.12-$hkey"
  [ -e "$hdir" ] || log "extracting the linux-source-6.12 uapi headers ($K612_VERSION)"
  cache_step "$hdir" extract_612_headers
  touch "$hdir"
  K612_HEADERS="$hdir/include"
  [ "${1:-}" = kernel ] || return 0
  local ikey
  ikey="$( { cat "$INIT_SCRIPT"; declare -f make_initramfs make_initramfs_builtin; pkg_version busybox-static; } | short_hash)"
  local idir="$CACHE/initramfs612-$ikey"
  cache_step "$idir" make_initramfs_builtin
  touch "$idir"
  K612_INITRD="$idir/initramfs.gz"
}

# Sets K612_BZIMAGE, building the 6.12 kernel when it is not cached. The build takes minutes, so it
# has a lock (and temporary directories, .tmp612.*) of its own: a 6.1-only prepare of another user
# neither waits for it nor removes its work in progress.
prepare_612_kernel() {
  local kkey
  kkey="$( { cat "$K612_FRAGMENT" "$K612_COMPAT_FRAGMENT"; declare -f build_612_kernel check_fragment; echo "$K612_VERSION"; } | short_hash)"
  local kdir="$CACHE/kernel612-$kkey"
  if [ ! -e "$kdir" ]; then
    exec 8> "$CACHE/.lock612"
    flock 8
    rm -rf "$CACHE"/.tmp612.*   # an interrupted build's leftovers (no other build runs: we hold the lock)
    if [ ! -e "$kdir" ]; then
      log "building the 6.12 guest kernel ($K612_VERSION): about 11 min on 2 idle cores, once"
      local t0; t0="$(now)"
      cache_step "$kdir" build_612_kernel .tmp612
      log "built the 6.12 kernel in $(elapsed "$t0") s"
    fi
    flock -u 8
  fi
  touch "$kdir"
  K612_BZIMAGE="$kdir/bzImage" K612_BZIMAGE_COMPAT="$kdir/bzImage-compat"
}

# The 6.12 guest's initramfs: the same /init, no modules (the kernel has 9p and virtio built in).
make_initramfs_builtin() { INITRD_MODULES="" make_initramfs "$1"; }

prepare() {
  case "$CACHE" in /tmp/* | /run/*) die "VFIO_LAB_CACHE must not be under /tmp or /run (the guest overlays them)";; esac
  [[ "$CACHE" != *[[:space:]]* ]] || die "VFIO_LAB_CACHE must not contain spaces"
  local t0; t0="$(now)"
  mkdir -p "$CACHE"
  # One prepare at a time per machine; a concurrent one waits.
  exec 9> "$CACHE/.lock"
  flock 9
  rm -rf "$CACHE"/.tmp.* "$CACHE"/debs/.download.*   # leftovers of an interrupted prepare

  ensure_packages
  # Only for a run that boots a configuration on QEMU 10 (cmd_run and cmd_e2e set PREPARE_QEMU10 through needs_for),
  # or when every configuration was put on it (VFIO_LAB_QEMU=10): the demo and the noiommu benchmarks need neither.
  if [ "${PREPARE_QEMU10:-0}" = 1 ] || [ "${VFIO_LAB_QEMU:-}" = 10 ]; then fetch_qemu10; fi
  if [ "${PREPARE_IGB:-0}" = 1 ]; then
    # the igb tests cross-check frame counts with DPDK's testpmd and e1000 PMD, from the host's packages over 9p
    local p missing=()
    for p in dpdk-dev librte-net-e1000-23 librte-mempool-ring23; do pkg_installed "$p" || missing+=("$p"); done
    [ "${#missing[@]}" -eq 0 ] || apt_install "${missing[@]}"
  fi
  fetch_image_deb
  check_versions

  # Cache keys: the inputs' versions and the recipes' text (this script's functions and files).
  local vfio_key kernel_key initrd_key
  vfio_key="$( { cat "$KBUILD_FILE"; declare -f build_vfio_modules; echo "$KABI $HDR_VERSION $SRC_VERSION"; } | short_hash)"
  VFIO_DIR="$CACHE/vfio-$KABI-$vfio_key"
  [ -e "$VFIO_DIR" ] || log "building the vfio modules with No-IOMMU ($KABI)"
  cache_step "$VFIO_DIR" build_vfio_modules

  kernel_key="$( { declare -f make_kernel_tree; echo "$IMG_VERSION $vfio_key"; } | short_hash)"
  KERNEL_DIR="$CACHE/kernel-$KABI-$kernel_key"
  [ -e "$KERNEL_DIR" ] || log "extracting the guest kernel and running depmod"
  cache_step "$KERNEL_DIR" make_kernel_tree

  initrd_key="$( { cat "$INIT_SCRIPT"; declare -f make_initramfs; pkg_version busybox-static; echo "$kernel_key"; } | short_hash)"
  INITRD_DIR="$CACHE/initramfs-$initrd_key"
  [ -e "$INITRD_DIR" ] || log "building the initramfs"
  cache_step "$INITRD_DIR" make_initramfs

  # Mark the entries in use; drop entries no prepare has used for 30 days (other keys, old kernels).
  touch "$VFIO_DIR" "$KERNEL_DIR" "$INITRD_DIR" "$IMAGE_DEB"
  find "$CACHE" -mindepth 1 -maxdepth 2 -mtime +30 \( -name 'vfio-*' -o -name 'kernel-*' -o -name 'kernel612-*' \
    -o -name 'initramfs-*' -o -name 'initramfs612-*' -o -name 'uapi-6.12-*' -o -name 'linux-image-*.deb' \) \
    -exec rm -rf {} + 2>/dev/null || true

  VMLINUZ="$KERNEL_DIR/boot/vmlinuz-$KABI"
  INITRD="$INITRD_DIR/initramfs.gz"
  # The 6.12 headers always (cheap, cached); the 6.12 kernel only when a caller needs it.
  prepare_612 "${PREPARE_612:-}"
  flock -u 9
  [ "${PREPARE_612:-}" = kernel ] && prepare_612_kernel
  log "prepared: kernel $KABI ($IMG_VERSION)${K612_BZIMAGE:+ and 6.12}, cache $CACHE ($(elapsed "$t0") s)"
}

# =================================================================================================
# run: one guest, one command.
# =================================================================================================

bdf() { printf '0000:00:%s.0' "$1"; }
# The guest gets the two igb ports: the igb configuration, or any with VFIO_LAB_IGB=1 (and VFIO_LAB_QEMU=10).
has_igb() { [ "$1" = igb ] || [ "${VFIO_LAB_IGB:-0}" = 1 ]; }
# Their slots: each 82576 is an SR-IOV PF whose 8 VFs QEMU reserves at devfn PF+0x80+2i, so the VFs of 0c and 0e
# land in slots 1c-1f; q35 has its LPC at 1f, so there (the igb configuration) the PFs sit at 0b and 0d (VFs in 1b-1e).
igb_slots() { # config -> "SLOT0 SLOT1"
  if [ "$1" = igb ]; then echo "0b 0d"; else echo "$SLOT_IGB0 $SLOT_IGB1"; fi
}

# QEMU arguments for configuration $1, run directory $2, output directory $3.
qemu_args() {
  local config="$1" run="$2" out="$3" append net_extra="" kernel="$VMLINUZ" initrd="$INITRD"
  append="console=ttyS0 panic=-1 quiet vfio_lab.config=$config vfio_lab.repo=$ROOT"
  if [[ "$config" == 612-* ]]; then
    [ -n "${K612_BZIMAGE:-}" ] || die "the 6.12 kernel is not prepared"
    kernel="$K612_BZIMAGE" initrd="$K612_INITRD"
    if [[ "$config" == 612-compat-* ]]; then kernel="$K612_BZIMAGE_COMPAT"; fi
    # lapic=notscdeadline: with QEMU/TCG's -cpu max, 6.12 drives the local APIC timer in TSC-deadline mode,
    # and a vCPU's timer stopped firing minutes into a test run (RCU "timer wakeup didn't happen"); the
    # one-shot mode 6.1 uses does not stall.
    append+=" vfio_lab.builtin=1 lapic=notscdeadline"
    # vfio is built in: its module parameter goes on the kernel command line.
    case "$config" in 612-noiommu | 612-compat-noiommu) append+=" vfio.enable_unsafe_noiommu_mode=1" ;; esac
  else
    append+=" vfio_lab.modules=$KERNEL_DIR"
  fi
  # The 6.12 guests get one vCPU: under TCG on a busy 2-core host their second vCPU's LAPIC timer could stall
  # for minutes (see README, "6.12 timer stall"); one vCPU has nothing to stall against.
  local smp=2
  if [[ "$config" == 612-* ]]; then smp=1; fi
  # The igb guest runs its vCPUs on one TCG thread: with one thread per vCPU (MTTCG) QEMU 10.0.2 aborted it on a busy
  # host (iotlb_to_section assertion, as it once did the noiommu guest), an emulator race single-threaded TCG avoids.
  local accel=tcg
  [ "$config" = igb ] && accel=tcg,thread=single
  QEMU_ARGS=("${QEMU_DATA_ARGS[@]}" -accel "$accel" -cpu max -m 2048 -smp "$smp"
    -nodefaults -no-user-config -display none -monitor none -no-reboot)
  case "$config" in
    noiommu | noiommu-off | 612-noiommu | 612-compat-noiommu)
      QEMU_ARGS+=(-M pc) ;;
    igb)
      # q35 without a vIOMMU (the groups are No-IOMMU ones, as on noiommu): on QEMU 10.0.2 the i440fx 6.1 guest's
      # second vCPU stopped getting timer interrupts minutes into a run on a busy host, twice (lab/README.md, "QEMU").
      QEMU_ARGS+=(-M q35) ;;
    type1 | 612-iommufd | 612-type1 | 612-compat-type1)
      # The vIOMMU comes before the devices it translates for.
      QEMU_ARGS+=(-M q35,kernel-irqchip=split -device intel-iommu,intremap=on)
      # no_timer_check: under TCG on a busy host the kernel's IO-APIC timer check (timer_irq_works) can miss
      # its deadline and panic with "timer doesn't work through Interrupt-remapped IO-APIC" (seen here).
      append+=" intel_iommu=on no_timer_check"
      net_extra=",iommu_platform=on"   # virtio DMA goes through the IOMMU, as vfio expects
      ;;
    *) die "unknown configuration '$config' (${CONFIGS[*]})" ;;
  esac
  [ "${INTERACTIVE:-0}" = 1 ] && append+=" vfio_lab.interactive=1"
  # Polled I/O queues for the kernel's nvme driver (bench nvme). The driver reads poll_queues when it probes a
  # controller and sizes the blk-mq maps from it then: writing the parameter later and resetting the controller makes
  # a poll queue the block layer never maps, so it goes on the command line (a module parameter that busybox's
  # modprobe and the built-in 6.12 driver both take from there).
  [ -n "${VFIO_LAB_NVME_POLL_QUEUES:-}" ] && append+=" nvme.poll_queues=$VFIO_LAB_NVME_POLL_QUEUES"
  QEMU_ARGS+=(-kernel "$kernel" -initrd "$initrd" -append "$append"
    # the lab's own shares: host root (read-only), run directory, output directory
    -fsdev "local,id=fshost,path=/,security_model=none,readonly=on,multidevs=remap"
    -device "virtio-9p-pci,fsdev=fshost,mount_tag=host,addr=0x$SLOT_9P_HOST"
    -fsdev "local,id=fslab,path=$run,security_model=none"
    -device "virtio-9p-pci,fsdev=fslab,mount_tag=lab,addr=0x$SLOT_9P_LAB"
    -fsdev "local,id=fsout,path=$out,security_model=none"
    -device "virtio-9p-pci,fsdev=fsout,mount_tag=out,addr=0x$SLOT_9P_OUT"
    # the devices under test
    -device "edu,addr=0x$SLOT_EDU,dma_mask=0xffffffffffffffff"
    -device "edu,addr=0x$SLOT_EDU2,dma_mask=0xffffffffffffffff"
    -drive "$(nvme_drive "$run")"
    -device "nvme,id=nvme0,drive=nvm,serial=VFIOLAB0001,addr=0x$SLOT_NVME"
    -netdev hubport,id=p0,hubid=0 -netdev hubport,id=p1,hubid=0
    -device "virtio-net-pci,netdev=p0,disable-legacy=on,mac=52:54:00:00:00:01,addr=0x$SLOT_NET0$net_extra"
    -device "virtio-net-pci,netdev=p1,disable-legacy=on,mac=52:54:00:00:00:02,addr=0x$SLOT_NET1$net_extra")
  # Namespace management (e2e on noiommu, VFIO_LAB_NVME_SUBSYS=1): a controller in an NVM subsystem (QEMU 6.1+:
  # Namespace Attachment) with namespace 1 attached and namespace 2 detached, 16 MiB each. Not in benchmark guests:
  # a second controller there could take the kernel name nvme0.
  if [ "${VFIO_LAB_NVME_SUBSYS:-0}" = 1 ]; then
    truncate -s 16M "$run/ns1.img" "$run/ns2.img"
    QEMU_ARGS+=(-device "nvme-subsys,id=subsys3,nqn=vfio-lab-subsys3"
      -device "nvme,id=nvme3,serial=VFIOLAB0003,subsys=subsys3,addr=0x$SLOT_NVME3"
      -drive "file=$run/ns1.img,if=none,format=raw,id=ns1" -device "nvme-ns,drive=ns1,nsid=1,bus=nvme3"
      -drive "file=$run/ns2.img,if=none,format=raw,id=ns2" -device "nvme-ns,drive=ns2,nsid=2,detached=on,bus=nvme3")
  fi
  # AER (issue 19, VFIO_LAB_AER=1): errors need a PCIe port above the device (its root port's AER logs them and
  # interrupts the guest's AER driver, which calls vfio-pci's error_detected and so the VFIO error interrupt), and an
  # AER capability in the device for the host to find the error in. QEMU's nvme has none; virtio-pci has one with aer=on.
  if [ "${VFIO_LAB_AER:-0}" = 1 ]; then
    [[ "$config" == noiommu* || "$config" == 612-noiommu || "$config" == 612-compat-noiommu ]] \
      && die "VFIO_LAB_AER=1 needs a q35 configuration (type1, 612-*type1, 612-iommufd): $config is i440fx, without PCIe ports"
    truncate -s 32M "$run/nvmeaer.img"
    QEMU_ARGS+=(-device "pcie-root-port,id=rpaer1,chassis=11,slot=1,addr=0x$SLOT_AER_PORT1"
      -device "pcie-root-port,id=rpaer2,chassis=12,slot=2,addr=0x$SLOT_AER_PORT2"
      -drive "file=$run/nvmeaer.img,if=none,format=raw,id=nvmaer"
      -device "nvme,id=nvmeaer,drive=nvmaer,serial=VFIOLAB0004,bus=rpaer1"
      -netdev hubport,id=p2,hubid=0
      -device "virtio-net-pci,id=netaer,netdev=p2,disable-legacy=on,aer=on,mac=52:54:00:00:00:03,bus=rpaer2$net_extra")
  fi
  # Two Intel 82576 ports (VFIO_LAB_IGB=1, issue 19) on a hub of their own (hubid 1) with no host-side netdev, like
  # the virtio-net ports: what one sends, the other receives. QEMU's igb model exists from 8.0 on (VFIO_LAB_QEMU=10).
  if has_igb "$config"; then
    [ "$(qemu_of "$config")" = 10 ] || die "VFIO_LAB_IGB=1 needs VFIO_LAB_QEMU=10 (QEMU 7.2 has no igb model)"
    local igb; read -r -a igb <<< "$(igb_slots "$config")"
    QEMU_ARGS+=(-netdev hubport,id=g0,hubid=1 -netdev hubport,id=g1,hubid=1
      -device "igb,netdev=g0,mac=52:54:00:00:01:01,addr=0x${igb[0]}"
      -device "igb,netdev=g1,mac=52:54:00:00:01:02,addr=0x${igb[1]}")
  fi
  # Two NUMA nodes (VFIO_LAB_NUMA=1, issue 21; the igb configuration boots with them): 1 GiB and one vCPU each, and
  # an nvme (serial VFIOLAB0005) behind a PCIe expander bridge whose ACPI proximity says node 1, so the guest's sysfs
  # gives the device numa_node 1 (QEMU docs/pci_expander_bridge.txt). pxb-pcie needs q35.
  if [ "${VFIO_LAB_NUMA:-0}" = 1 ]; then
    [ "$config" = igb ] || die "VFIO_LAB_NUMA=1 is for the igb configuration (q35, two vCPUs): not $config"
    truncate -s 32M "$run/nvmenuma.img"
    QEMU_ARGS+=(-object memory-backend-ram,id=mem0,size=1024M -numa node,nodeid=0,cpus=0,memdev=mem0
      -object memory-backend-ram,id=mem1,size=1024M -numa node,nodeid=1,cpus=1,memdev=mem1
      -device "pxb-pcie,id=pxbnuma,bus_nr=64,numa_node=1,bus=pcie.0,addr=0x$SLOT_PXB_NUMA"
      -device pcie-root-port,id=rpnuma,bus=pxbnuma,chassis=21,slot=0
      -drive "file=$run/nvmenuma.img,if=none,format=raw,id=nvmnuma"
      -device nvme,id=nvmenuma,drive=nvmnuma,serial=VFIOLAB0005,bus=rpnuma)
  fi
  # QEMU's log (its trace events, with Debian's "log" trace backend) in the run directory, which the guest sees at
  # /run/vfio-lab/qemu.log: bench net switches virtio's notification events on through QMP for an untimed pass and
  # counts them there. No event is on from the start, so the file stays empty otherwise.
  if [ "${VFIO_LAB_QEMU_LOG:-0}" = 1 ]; then
    QEMU_ARGS+=(-D "$run/qemu.log")
  fi
  # bench nvme checks data on a file-backed controller while the timed runs use the null-co one.
  if [ "${VFIO_LAB_VERIFY_NVME:-0}" = 1 ]; then
    QEMU_ARGS+=(-drive "file=$run/nvme2.img,if=none,format=raw,id=nvm2"
      -device "nvme,drive=nvm2,serial=VFIOLAB0002,addr=0x$SLOT_NVME2")
  fi
}

# The nvme's backing: a raw file (data checks), or null-co (benchmarks only: it discards writes, reads zeroes).
nvme_drive() { # run-dir
  if [ "${VFIO_LAB_NVME_BACKEND:-file}" = null ]; then
    echo "file=null-co://,if=none,format=raw,id=nvm,file.size=1G,file.read-zeroes=on"
  else
    echo "file=$1/nvme.img,if=none,format=raw,id=nvm"
  fi
}

# The script the guest runs chrooted into the host root: environment, cwd, the command.
write_job() { # run-dir config command...
  local run="$1" config="$2"; shift 2
  local dotnet_dir path
  dotnet_dir="$(dirname "$(readlink -f "$(command -v dotnet || echo /usr/bin/dotnet)")")"
  path="$dotnet_dir:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  {
    echo '#!/bin/bash'
    echo '# Written by lab/lab.sh for one guest run.'
    printf 'export PATH=%q HOME=/tmp TMPDIR=/tmp LANG=C.UTF-8 DOTNET_ROOT=%q\n' "$path" "$dotnet_dir"
    echo 'export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1'
    # Under TCG every JIT'ed instruction is expensive: skip tiered PGO's instrumented tier.
    echo 'export DOTNET_TieredPGO=0'
    printf 'export VFIO_LAB_CONFIG=%q VFIO_LAB_NAME=%q VFIO_LAB_OUT=/run/vfio-lab/out\n' "$(config_family "$config")" "$config"
    # QMP through lab/qmp-bridge.py: the QOM path of VFIO_LAB_NVME is /machine/peripheral/nvme0.
    echo 'export VFIO_LAB_QMP=/run/vfio-lab/qmp'
    case "$config" in
      612-iommufd) echo 'export VFIO_LAB_OPEN_MODE=iommufd' ;;
      612-type1 | 612-compat-type1) echo 'export VFIO_LAB_OPEN_MODE=type1 VFIO_DOTNET_MODE=type1' ;;
    esac
    printf 'export VFIO_LAB_EDU=%s VFIO_LAB_EDU2=%s VFIO_LAB_NVME=%s VFIO_LAB_NET0=%s VFIO_LAB_NET1=%s\n' \
      "$(bdf $SLOT_EDU)" "$(bdf $SLOT_EDU2)" "$(bdf $SLOT_NVME)" "$(bdf $SLOT_NET0)" "$(bdf $SLOT_NET1)"
    [ "${VFIO_LAB_VERIFY_NVME:-0}" = 1 ] && printf 'export VFIO_LAB_NVME2=%s\n' "$(bdf $SLOT_NVME2)"
    [ "${VFIO_LAB_NVME_SUBSYS:-0}" = 1 ] && printf 'export VFIO_LAB_NVME3=%s\n' "$(bdf $SLOT_NVME3)"
    [ "${VFIO_LAB_AER:-0}" = 1 ] && printf 'export VFIO_LAB_NVME_AER=%s VFIO_LAB_NET_AER=%s\n' "$BDF_NVME_AER" "$BDF_NET_AER"
    [ "${VFIO_LAB_NUMA:-0}" = 1 ] && printf 'export VFIO_LAB_NVME_NUMA=%s\n' "$BDF_NVME_NUMA"
    if has_igb "$config"; then
      local igb; read -r -a igb <<< "$(igb_slots "$config")"
      printf 'export VFIO_LAB_IGB0=%s VFIO_LAB_IGB1=%s\n' "$(bdf "${igb[0]}")" "$(bdf "${igb[1]}")"
    fi
    # The guest starts from an empty environment (guest-init.sh runs the job under env -i): a caller's settings
    # for the command (NAME=VALUE) come through JOB_ENV.
    local kv
    for kv in "${JOB_ENV[@]}"; do printf 'export %q\n' "$kv"; done
    printf 'cd %q || exit 126\n' "$ROOT"
    printf '%q ' "$@"; echo
  } > "$run/job.sh"
}

# run_guest CONFIG TIMEOUT OUTDIR LOGFILE STREAM COMMAND... -> COMMAND's exit code, 124, or 125.
run_guest() {
  local config="$1" timeout="$2" out="$3" logf="$4" stream="$5"; shift 5
  local run rc qrc
  run="$(mktemp -d /tmp/vfio-lab.XXXXXX)"
  RUN_DIR="$run"   # removed on exit even when interrupted (see main)
  mkdir -p "$run/out" "$out" "$(dirname "$logf")"
  truncate -s 256M "$run/nvme.img"
  [ "${VFIO_LAB_VERIFY_NVME:-0}" = 1 ] && truncate -s 128M "$run/nvme2.img"
  write_job "$run" "$config" "$@"
  use_qemu "$(qemu_of "$config")"
  qemu_args "$config" "$run" "$out"
  [ "$QEMU_BIN" = qemu-system-x86_64 ] || log "$config: $("$QEMU_BIN" --version | head -n1)"
  # QMP for the job (lab/qmp-bridge.py: the guest writes requests into the shared run directory), not interactive runs.
  local bridge=""
  if [ "${INTERACTIVE:-0}" != 1 ]; then
    QEMU_ARGS+=(-qmp "unix:$run/qmp.sock,server=on,wait=off")
    /usr/bin/python3 "$LAB_DIR/qmp-bridge.py" "$run" > "$run/qmp-bridge.log" 2>&1 &
    bridge=$!
  fi

  set +e
  if [ "${INTERACTIVE:-0}" = 1 ]; then
    "$QEMU_BIN" "${QEMU_ARGS[@]}" -serial mon:stdio
    qrc=$?
  elif [ "$stream" = 1 ]; then
    timeout --foreground -k 10 "$timeout" "$QEMU_BIN" "${QEMU_ARGS[@]}" -serial stdio < /dev/null 2>&1 \
      | tee "$logf" >&2
    qrc=${PIPESTATUS[0]}
  else
    timeout --foreground -k 10 "$timeout" "$QEMU_BIN" "${QEMU_ARGS[@]}" -serial stdio < /dev/null > "$logf" 2>&1
    qrc=$?
  fi
  set -e
  if [ -n "$bridge" ]; then kill "$bridge" 2>/dev/null || true; wait "$bridge" 2>/dev/null || true; fi

  if [ -s "$run/rc" ]; then
    rc="$(cat "$run/rc")"
    [ "$qrc" -eq 0 ] || log "$config: warning: the command finished (exit $rc) but QEMU exited with $qrc"
  else
    if [ "$qrc" -eq 124 ] || [ "$qrc" -eq 137 ]; then
      LAB_FAILURE="the guest ($config) did not finish within $timeout s"; rc=124
    elif grep -q 'Kernel panic' "$logf"; then
      LAB_FAILURE="the guest ($config) kernel panicked: $(grep -m1 -o 'Kernel panic.*' "$logf" | tr -d '\r')"; rc=125
    elif grep -q 'vfio-lab: FAILED' "$logf"; then
      LAB_FAILURE="the guest ($config) init failed: $(grep -m1 -o 'vfio-lab: FAILED.*' "$logf" | tr -d '\r')"; rc=125
    else
      LAB_FAILURE="the guest ($config) ended without reporting an exit code (QEMU exit $qrc)"; rc=125
    fi
    {
      log "FAILED: $LAB_FAILURE; last console lines ($logf):"
      tail -n 25 "$logf" | sed 's/^/    | /'
    } >&2
  fi
  rm -rf "$run"
  RUN_DIR=""
  return "$rc"
}

cmd_run() {
  local config="" timeout=300 out="" logf="" stream=1
  [ $# -gt 0 ] || die "usage: lab.sh run CONFIG [--timeout S] [--out DIR] [--log FILE] [--quiet] -- COMMAND..."
  config="$1"; shift
  while [ $# -gt 0 ]; do
    case "$1" in
      --timeout) timeout="$2"; shift 2 ;;
      --out) out="$2"; shift 2 ;;
      --log) logf="$2"; shift 2 ;;
      --quiet) stream=0; shift ;;
      --) shift; break ;;
      *) die "run: unexpected argument '$1' (the command goes after --)" ;;
    esac
  done
  [ $# -gt 0 ] || die "run: no command given (lab.sh run $config -- COMMAND...)"
  check_config "$config"
  out="${out:-$ROOT/artifacts/lab/out}" logf="${logf:-$ROOT/artifacts/lab/$config.console.log}"
  needs_for "$config"
  if [[ "$config" == 612-* ]]; then PREPARE_612=kernel prepare; else prepare; fi
  local t0 rc=0; t0="$(now)"
  run_guest "$config" "$timeout" "$(abspath "$out")" "$(abspath "$logf")" "$stream" "$@" || rc=$?
  log "$config: exit $rc in $(elapsed "$t0") s (console: $logf)"
  return "$rc"
}

# The family whose e2e tests a configuration runs: the 6.12 guests run those of their 6.1 counterpart.
config_family() {
  case "$1" in
    612-noiommu | 612-compat-noiommu) echo noiommu ;;
    612-iommufd | 612-type1 | 612-compat-type1) echo type1 ;;
    *) echo "$1" ;;
  esac
}

check_config() {
  local c
  for c in "${CONFIGS[@]}"; do [ "$1" = "$c" ] && return 0; done
  die "unknown configuration '$1' (${CONFIGS[*]})"
}
abspath() { mkdir -p "$(dirname "$1")"; echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }

# =================================================================================================
# e2e: every configuration runs the e2e test executable, filtered to its own tests.
# =================================================================================================

cmd_e2e() {
  [ $# -eq 1 ] || die "usage: lab.sh e2e OUTDIR"
  local outdir; outdir="$(abspath "$1")"
  mkdir -p "$outdir"
  local cfg configs=("${CONFIGS[@]}")
  if [ -n "${VFIO_LAB_CONFIGS:-}" ]; then
    read -r -a configs <<< "$VFIO_LAB_CONFIGS"
    for cfg in "${configs[@]}"; do check_config "$cfg"; done
  fi
  for cfg in "${CONFIGS[@]}"; do rm -f "$outdir/$cfg".{log,rc,console.txt}; done
  rm -f "$outdir"/.queue "$outdir"/.times "$outdir"/.k612.rc "$outdir"/prepare-612.txt
  local dll="tests/Vfio.E2E.Tests/bin/${CONFIG:-Release}/net10.0/Vfio.E2E.Tests.dll"

  # Each config leaves OUTDIR/<config>.log (the test run's output; a lab failure is written there
  # too, without an xunit summary, so ./run counts it as a failure) and OUTDIR/<config>.rc.
  # prepare exits on error: try it in a subshell first, so a failure still leaves logs behind.
  for cfg in "${configs[@]}"; do needs_for "$cfg"; done
  if ! (prepare); then
    for cfg in "${configs[@]}"; do
      echo "lab: FAILED: lab.sh prepare failed; no guest was booted" > "$outdir/$cfg.log"
      echo 125 > "$outdir/$cfg.rc"
    done
    return 1
  fi
  prepare 2>/dev/null   # cached now: sets the paths in this shell
  # The 6.12 kernels (about 11 min to build on a fresh machine, cached after) build in the background while
  # the 6.1 guests run: a lane that reaches a 6.12 configuration first waits for them.
  ( rc=0; (PREPARE_612=kernel prepare) > "$outdir/prepare-612.txt" 2>&1 || rc=$?; echo "$rc" > "$outdir/.k612.rc" ) &
  local k612=$!

  # Guests run in lanes, VFIO_LAB_JOBS at a time (default: one per core, at most 4 and one per 3 GiB of free
  # memory): each TCG guest keeps about one core busy, so on 2 cores two lanes halve the lab's wall time.
  # Lanes take configurations from one queue, 6.1 first (they need no 6.12 kernel), longest first.
  local jobs="${VFIO_LAB_JOBS:-}"
  if [ -z "$jobs" ]; then
    local mem_gib; mem_gib=$(( $(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo) / 1024 / 1024 ))
    jobs="$(nproc)"; [ "$jobs" -le 4 ] || jobs=4
    [ "$jobs" -le $(( mem_gib / 3 )) ] || jobs=$(( mem_gib / 3 ))
    [ "$jobs" -ge 1 ] || jobs=1
  fi
  local order=() c
  for c in noiommu type1 igb noiommu-off 612-noiommu 612-compat-noiommu 612-iommufd 612-type1 612-compat-type1; do
    for cfg in "${configs[@]}"; do [ "$cfg" = "$c" ] && order+=("$c"); done
  done
  printf '%s\n' "${order[@]}" > "$outdir/.queue"
  log "e2e: ${#order[@]} configurations in $jobs lanes: ${order[*]}"
  local t_all lanes=() lane; t_all="$(now)"
  for ((lane = 1; lane <= jobs; lane++)); do
    e2e_lane "$outdir" "$dll" "$lane" &
    lanes+=("$!")
  done
  local failed=0 pid
  for pid in "${lanes[@]}"; do wait "$pid" || failed=1; done
  wait "$k612" || true
  for cfg in "${order[@]}"; do
    [ "$(cat "$outdir/$cfg.rc" 2>/dev/null || echo 125)" = 0 ] || failed=1
  done
  log "wall times ($jobs lanes, $(elapsed "$t_all") s in all): $(tr '\n' ' ' < "$outdir/.times" 2>/dev/null)"
  return "$failed"
}

# One lane of cmd_e2e: boots the next configuration of OUTDIR/.queue until the queue is empty.
e2e_lane() { # outdir dll lane
  local outdir="$1" dll="$2" lane="$3" cfg t0 rc
  trap cleanup EXIT   # this subshell's own run directory
  while cfg="$(e2e_next "$outdir")"; do
    t0="$(now)" rc=0
    LAB_FAILURE=""
    if [ ! -f "$ROOT/$dll" ]; then
      echo "lab: FAILED: $dll is missing (build the solution first: ./run test e2e)" > "$outdir/$cfg.log"
      rc=125
    elif [[ "$cfg" == 612-* ]] && ! e2e_wait_612 "$outdir" "$cfg"; then
      rc=125
    else
      log "$cfg: booting (lane $lane)"
      # The long fault tests (1,000-cycle leak loops, 30 s concurrency, 200 No-IOMMU open/close cycles) and the
      # vfio command driving the drivers (Lab.CliOverDrivers: seconds per vfio start under TCG, kernel paths the
      # driver suites of the same guest cover) run on the 6.1 guests only; the 6.12 guests run the rest of their family.
      local exclude=""
      # Tests that need Debian's kernel (cost=debian-kernel: ext4) are left out there too: the 6.12 builds are minimal.
      if [[ "$cfg" == 612-* ]]; then exclude="cost=long cost=cli-over-drivers cost=debian-kernel"; fi
      local subsys=0 aer=0 also=""
      [ "$cfg" = noiommu ] && subsys=1
      # The PCIe error tests (trait lab=aer) need root ports and the AER devices behind them: the 6.1 type1 guest
      # (q35) has them in every run.
      [ "$cfg" = type1 ] && aer=1 also="lab=aer"
      # The NUMA tests (trait lab=numa) need two nodes and a device on the second: the igb guest (q35, two vCPUs)
      # boots with them in every run.
      local numa=0
      [ "$cfg" = igb ] && numa=1 also="lab=numa"
      VFIO_LAB_NVME_SUBSYS=$subsys VFIO_LAB_AER=$aer VFIO_LAB_NUMA=$numa run_guest "$cfg" "${VFIO_LAB_TIMEOUT:-1500}" "$outdir" "$outdir/$cfg.console.txt" 0 \
        bash -o pipefail -c 'x=(); for t in $2; do x+=(-trait- "$t"); done; for t in $3; do x+=(-trait "$t"); done; dotnet "$1" -noColor -trait "lab=$VFIO_LAB_CONFIG" -trait "lab=$VFIO_LAB_NAME" "${x[@]}" -longRunning 120 -result-junit "$VFIO_LAB_OUT/$VFIO_LAB_NAME.junit.xml" 2>&1 | tee "$VFIO_LAB_OUT/$VFIO_LAB_NAME.log"' \
        e2e "$dll" "$exclude" "$also" || rc=$?
      if [ -n "$LAB_FAILURE" ]; then
        {
          echo "lab: FAILED: $LAB_FAILURE"
          echo "lab: last console lines ($outdir/$cfg.console.txt):"
          tail -n 25 "$outdir/$cfg.console.txt"
        } >> "$outdir/$cfg.log"
      fi
    fi
    echo "$rc" > "$outdir/$cfg.rc"
    echo "$cfg=$(elapsed "$t0")s(exit $rc)" >> "$outdir/.times"
    log "$cfg: exit $rc in $(elapsed "$t0") s (lane $lane)"
  done
}

# Pops the first configuration of OUTDIR/.queue onto stdout; fails when the queue is empty.
e2e_next() { # outdir
  local q="$1/.queue" first
  {
    flock 7
    first="$(head -n 1 "$q")"
    [ -n "$first" ] || return 1
    sed -i 1d "$q"
  } 7>> "$q"
  echo "$first"
}

# Waits for the background 6.12 prepare of cmd_e2e, then sets the 6.12 paths in this lane. On failure writes
# OUTDIR/<config>.log and fails.
e2e_wait_612() { # outdir config
  local outdir="$1" cfg="$2" t0 said=0; t0="$(now)"
  until [ -s "$outdir/.k612.rc" ]; do
    [ "$said" = 1 ] || { log "$cfg: waiting for the 6.12 kernels (building; log $outdir/prepare-612.txt)"; said=1; }
    sleep 2
  done
  [ "$said" = 0 ] || log "$cfg: the 6.12 kernels are ready after $(elapsed "$t0") s of waiting"
  # prepare exits on error: the subshell keeps that from ending the lane.
  if [ "$(cat "$outdir/.k612.rc")" != 0 ] || ! (PREPARE_612=kernel prepare 2>/dev/null); then
    {
      echo "lab: FAILED: preparing the 6.12 kernels failed; no $cfg guest was booted"
      tail -n 30 "$outdir/prepare-612.txt"
    } > "$outdir/$cfg.log"
    return 1
  fi
  PREPARE_612=kernel prepare 2>/dev/null   # cached: sets the 6.12 paths in this lane
}

# =================================================================================================
# bench, demo, shell
# =================================================================================================

cmd_bench() {
  case "${1:-}" in
    lab)
      local t0 rc=0; t0="$(now)"
      cmd_e2e "$ROOT/artifacts/bench-lab" || rc=$?
      echo "lab-e2e seconds=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%d", b - a + 0.5 }')"
      return "$rc"
      ;;
    nvme)
      # One boot, two QEMU nvme controllers: null-co for the timed runs (the kernel's driver with fio, ours, and
      # spdk_nvme_perf when SPDK_NVME_PERF names one), a raw file for the data check. lab/bench-nvme.sh writes the
      # table and, when every run and check passed, the ratio line to $out/result.
      pkg_installed fio || apt_install fio
      prepare
      local out="$ROOT/artifacts/bench-nvme" rc=0 t0 load_before secs="${BENCH_SECONDS:-10}" ramp="${BENCH_RAMP:-2}"
      rm -rf "$out"; mkdir -p "$out"
      # 16 fio runs, 8 of ours, 4 of SPDK's at most and the data check, each with its ramp and some start-up.
      local timeout="${VFIO_LAB_TIMEOUT:-$((600 + 29 * (secs + ramp + 20)))}"
      load_before="$(cut -d' ' -f1-3 /proc/loadavg)" t0="$(now)"
      JOB_ENV=("BENCH_SECONDS=$secs" "BENCH_RAMP=$ramp" "SPDK_NVME_PERF=${SPDK_NVME_PERF:-}")
      VFIO_LAB_NVME_BACKEND=null VFIO_LAB_VERIFY_NVME=1 VFIO_LAB_NVME_POLL_QUEUES=1 \
        run_guest noiommu "$timeout" "$out" "$out/console.txt" 0 lab/bench-nvme.sh || rc=$?
      JOB_ENV=()
      [ -s "$out/result" ] || die "bench nvme produced no result (exit $rc; console $out/console.txt, logs in $out)"
      # The host's load decides how much CPU QEMU's TCG threads got: say what it was around the run.
      echo "host load average: before $load_before, after $(cut -d' ' -f1-3 /proc/loadavg); $(elapsed "$t0") s including the boot"
      [ "$rc" -eq 0 ] || log "bench nvme failed (exit $rc): the table has what ran, the failures follow it; logs in $out"
      cat "$out/result"
      return "$rc"
      ;;
    net)
      # io-forward between the two virtio-net ports in one No-IOMMU guest: DPDK testpmd, then ours
      # (lab/bench-net.sh). DPDK runs from the host's packages, which the guest sees over 9p.
      # `bench net igb`: the same between the two 82576 ports of a QEMU 10 guest (lab/bench-net-igb.sh).
      local out="$ROOT/artifacts/bench-net" rc=0 p missing=() pmd=librte-net-virtio23 job=lab/bench-net.sh
      export VFIO_LAB_QEMU_LOG=1
      if [ "${2:-}" = igb ]; then
        export VFIO_LAB_QEMU=10 VFIO_LAB_IGB=1
        out="$ROOT/artifacts/bench-net-igb" pmd=librte-net-e1000-23 job=lab/bench-net-igb.sh
      fi
      for p in dpdk-dev "$pmd" librte-mempool-ring23; do pkg_installed "$p" || missing+=("$p"); done
      [ "${#missing[@]}" -eq 0 ] || apt_install "${missing[@]}"
      rm -rf "$out"; mkdir -p "$out"
      prepare
      local load_before; load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
      run_guest noiommu "${VFIO_LAB_TIMEOUT:-900}" "$out" "$out/console.txt" 0 bash "$job" || rc=$?
      [ -s "$out/result" ] || die "bench net produced no result (exit $rc; console $out/console.txt)"
      # The host's load decides how much CPU QEMU's TCG threads got: say what it was around the run.
      echo "host load average: before $load_before, after $(cut -d' ' -f1-3 /proc/loadavg)"
      cat "$out/result"
      return "$rc"
      ;;
    *) die "unknown benchmark '${1:-}' (lab, nvme, net; micro runs on the host: ./run bench micro)" ;;
  esac
}

# The demo: one No-IOMMU boot running lab/demo.sh, its output streamed as it happens. The guest keeps
# demo.log (what was shown) and demo-summary.txt (step, result, seconds) in artifacts/demo/.
cmd_demo() {
  [ $# -eq 0 ] || die "usage: lab.sh demo"
  local dll="src/Vfio.Cli/bin/${CONFIG:-Release}/net10.0/vfio.dll"
  [ -f "$ROOT/$dll" ] || die "$dll is missing: build the solution first (./run demo does)"
  prepare
  local out="$ROOT/artifacts/demo" rc=0 t0 color=""
  rm -rf "$out"; mkdir -p "$out"
  [ -t 2 ] && color=--color      # the guest's console is streamed to our stderr
  t0="$(now)"
  log "booting a guest in No-IOMMU mode (QEMU/TCG, no acceleration: the boot and each dotnet start take a while)"
  LAB_FAILURE=""
  run_guest noiommu "${VFIO_LAB_TIMEOUT:-600}" "$out" "$out/console.txt" 1 lab/demo.sh $color || rc=$?
  if [ -n "$LAB_FAILURE" ]; then
    log "demo: the lab failed: $LAB_FAILURE (console: $out/console.txt)"
  elif [ "$rc" -eq 0 ]; then
    log "demo: every step passed in $(elapsed "$t0") s including the boot (output: $out/demo.log)"
  else
    log "demo: FAILED (exit $rc) after $(elapsed "$t0") s; output: $out/demo.log, console: $out/console.txt"
  fi
  return "$rc"
}

cmd_shell() {
  [ $# -eq 1 ] || die "usage: lab.sh shell CONFIG"
  check_config "$1"
  [ -t 0 ] || die "shell needs a terminal"
  needs_for "$1"
  if [[ "$1" == 612-* ]]; then PREPARE_612=kernel prepare; else prepare; fi
  log "booting $1; leave with 'exit' (the guest powers off), or Ctrl-A X"
  INTERACTIVE=1 run_guest "$1" 0 "$ROOT/artifacts/lab/out" "$ROOT/artifacts/lab/$1.console.log" 0 bash -i
}

# The 6.12 uapi headers' include directory on stdout (extracted and cached on first use), for the
# unit tests' layout probe; ./run exports it as VFIO_UAPI_INCLUDE.
cmd_headers() {
  [ $# -eq 0 ] || die "usage: lab.sh headers"
  mkdir -p "$CACHE"
  exec 9> "$CACHE/.lock"
  flock 9
  prepare_612
  flock -u 9
  echo "$K612_HEADERS"
}

RUN_DIR=""
JOB_ENV=()   # NAME=VALUE settings write_job exports to the guest's command
cleanup() { [ -z "$RUN_DIR" ] || rm -rf "$RUN_DIR"; }

main() {
  trap cleanup EXIT
  [ "$(id -u)" = 0 ] || die "the lab needs root (apt, the cache under /var/cache, vfio in the guest)"
  local cmd="${1:-help}"; shift || true
  case "$cmd" in
    prepare) PREPARE_612=kernel prepare ;;
    headers) cmd_headers "$@" ;;
    run) cmd_run "$@" ;;
    e2e) cmd_e2e "$@" ;;
    bench) cmd_bench "$@" ;;
    shell) cmd_shell "$@" ;;
    demo) cmd_demo "$@" ;;
    help | -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
    *) die "unknown command '$cmd' (prepare, run, e2e, shell, bench, demo)" ;;
  esac
}

main "$@"
