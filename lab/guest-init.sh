#!/bin/busybox sh
# /init of the guest lab's initramfs (runs as PID 1 under busybox sh).
#
# Reads its settings from the kernel command line (written by lab.sh):
#   vfio_lab.config=noiommu|type1|noiommu-off|igb|612-noiommu|612-iommufd|612-type1|612-compat-noiommu|612-compat-type1
#                                                which guest configuration this is
#   vfio_lab.modules=/path                      host directory holding lib/modules/<abi> of the
#                                                guest kernel (depmod'ed, vfio rebuilt with No-IOMMU)
#   vfio_lab.builtin=1                          the kernel has everything built in (the 6.12 guests):
#                                                no module tree, nothing to load; vfio's No-IOMMU
#                                                parameter comes on the kernel command line
#   vfio_lab.interactive=1                      give the job the serial line as controlling tty
# then mounts the host's root read-only over 9p (tag "host"), the per-run control directory
# (tag "lab", read-write) and the output directory (tag "out", read-write), loads the vfio stack,
# and runs /run/vfio-lab/job.sh chrooted into the host root. The job's exit code goes to
# /run/vfio-lab/rc on the host. Nothing is bound to vfio-pci here: tests do that themselves.
#
# Whatever happens, the guest powers off: a failure prints "vfio-lab: FAILED: ..." first, and
# if this script itself dies the kernel panics and QEMU (-no-reboot, panic=-1) exits.

export PATH=/bin:/sbin:/usr/bin:/usr/sbin

say() { echo "vfio-lab: [$(cut -d" " -f1 /proc/uptime)] $*"; }
halt() { sync; poweroff -f; sleep 5; echo o > /proc/sysrq-trigger; }
fail() { say "FAILED: $*"; halt; }

/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

# --- settings from the kernel command line -------------------------------------------------------
CONFIG="" MODULES="" REPO="" INTERACTIVE=0 BUILTIN=0
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    vfio_lab.config=*) CONFIG="${arg#*=}" ;;
    vfio_lab.modules=*) MODULES="${arg#*=}" ;;
    vfio_lab.repo=*) REPO="${arg#*=}" ;;
    vfio_lab.interactive=*) INTERACTIVE="${arg#*=}" ;;
    vfio_lab.builtin=*) BUILTIN="${arg#*=}" ;;
  esac
done
case "$CONFIG" in
  noiommu | igb | 612-noiommu | 612-compat-noiommu) NOIOMMU=1 ;;
  type1 | noiommu-off | 612-iommufd | 612-type1 | 612-compat-type1) NOIOMMU=0 ;;
  *) fail "unknown or missing vfio_lab.config='$CONFIG'" ;;
esac
ABI="$(uname -r)"
say "config $CONFIG, kernel $ABI"

# --- just enough modules to reach the host: virtio-pci and 9p (list made by lab.sh, in order) ---
while read -r ko; do
  insmod "/lib/boot/$ko" || fail "insmod $ko"
done < /lib/boot/order

# --- the host's root, read-only; a writable tmp and run over it -----------------------------------
# cache=loose: the host root does not change under a test run, and caching makes dotnet start faster.
mkdir -p /host
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro host /host \
  || fail "cannot mount the host root (9p tag 'host')"
# A repository cloned under /tmp or /run (CI may clone anywhere) would vanish under the tmpfs: hold it
# aside and put it back at the same path inside the tmpfs.
case "$REPO" in
  /tmp/* | /run/*)
    mkdir -p /repo && mount --bind "/host$REPO" /repo || fail "cannot hold the repository $REPO"
    ;;
  *) REPO="" ;;
esac
mount -t tmpfs -o mode=1777 tmpfs /host/tmp || fail "tmpfs on /host/tmp"
mount -t tmpfs -o mode=755 tmpfs /host/run || fail "tmpfs on /host/run"
if [ -n "$REPO" ]; then
  mkdir -p "/host$REPO" && mount --bind /repo "/host$REPO" || fail "cannot show the repository at $REPO"
fi
mkdir -p /host/run/vfio-lab
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 lab /host/run/vfio-lab \
  || fail "cannot mount the run directory (9p tag 'lab')"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out /host/run/vfio-lab/out \
  || fail "cannot mount the output directory (9p tag 'out')"

if [ "$BUILTIN" = 1 ]; then
  # vfio, vfio-pci, nvme and virtio_net are built in: the devices are already bound as on a real machine.
  [ "$(cat /sys/module/vfio/parameters/enable_unsafe_noiommu_mode)" = "$( [ "$NOIOMMU" = 1 ] && echo Y || echo N)" ] \
    || fail "vfio.enable_unsafe_noiommu_mode is not what config $CONFIG needs"
else
# --- the guest kernel's module tree, from the lab cache on the host -------------------------------
[ -n "$MODULES" ] && [ -d "/host$MODULES/lib/modules/$ABI" ] \
  || fail "module tree '/host$MODULES/lib/modules/$ABI' not found"
mkdir -p /lib/modules
mount --bind "/host$MODULES/lib/modules" /lib/modules
# Inside the chroot /lib/modules/<abi> is the host's (headers package); show the guest's instead.
if [ -d "/host/lib/modules/$ABI" ]; then
  mount --bind "/lib/modules/$ABI" "/host/lib/modules/$ABI"
fi

# --- the vfio stack (vfio_virqfd and irqbypass before vfio-pci-core), device drivers -------------
modprobe irqbypass || fail "modprobe irqbypass"
modprobe vfio enable_unsafe_noiommu_mode="$NOIOMMU" || fail "modprobe vfio"
for m in vfio_virqfd vfio_iommu_type1 vfio-pci-core vfio-pci; do
  modprobe "$m" || fail "modprobe $m"
done
# Kernel drivers for the devices that have one, so devices start out bound as on a real machine
# (the edu devices have no kernel driver and stay unbound).
for m in nvme virtio_net; do
  modprobe "$m" || fail "modprobe $m"
done
fi
say "vfio noiommu=$(cat /sys/module/vfio/parameters/enable_unsafe_noiommu_mode)"

# --- /dev extras: ptys, shm, 2 MiB hugepages ------------------------------------------------------
mkdir -p /dev/pts /dev/shm /dev/hugepages
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
echo 256 > /proc/sys/vm/nr_hugepages
mount -t hugetlbfs -o pagesize=2M hugetlbfs /dev/hugepages || fail "hugetlbfs"

# --- into the host root ---------------------------------------------------------------------------
mount --bind /proc /host/proc
mount --bind /sys /host/sys
mount -o rbind /dev /host/dev
[ -f /host/run/vfio-lab/job.sh ] || fail "no job.sh in the run directory"

say "running the job"
if [ "$INTERACTIVE" = 1 ]; then
  setsid cttyhack env -i TERM="${TERM:-linux}" /bin/busybox chroot /host /bin/bash /run/vfio-lab/job.sh
else
  env -i TERM=dumb /bin/busybox chroot /host /bin/bash /run/vfio-lab/job.sh < /dev/null
fi
rc=$?
echo "$rc" > /host/run/vfio-lab/rc
say "job exited with code $rc"
umount /host/run/vfio-lab/out
umount /host/run/vfio-lab
halt
