#!/bin/sh
# PID 1 of a lab guest (busybox). Mounts the host's / read-only under a tmpfs overlay, like
# virtme-ng, so node, libbpf, bpftool, haproxy … in the guest are the host's own; then serves
# the control channel: it says READY, runs each "RUN <base64 script>" chrooted into that root
# with stdout/stderr on their own virtio-serial ports, answers "EXIT <code>", and powers off
# on BYE (or when the host goes away). Everything path-specific (the out dir, the modules dir)
# is in the host's script, so this file stays generic.
# Boot phases are stamped with the guest clock (/proc/uptime) and sent with READY, so the host
# can split boot-to-ready into QEMU start, kernel, /init and the root mount (no fork per stamp).
export PATH=/bin
mount -t proc proc /proc
read -r T_INIT _ </proc/uptime
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

FS=9p
for a in $(cat /proc/cmdline); do
  case "$a" in lab.fs=*) FS=${a#lab.fs=} ;; esac
done

# the boot modules and the root filesystem's now; the NIC's after READY (below)
load() {
  while read -r m g; do
    [ "$g" = "$1" ] && insmod "/lib/modules/$m.ko" 2>/dev/null
  done </modules.order
}
load boot
load "$FS"

die() {
  echo "lab-init: $*"
  [ -n "$CTL" ] && echo "FAIL $*" >"$CTL"
  poweroff -f
}

# Find the control ports by name: without udev there are no /dev/virtio-ports links.
i=0
while [ $i -lt 200 ]; do
  for p in /sys/class/virtio-ports/*; do
    [ -r "$p/name" ] || continue
    case "$(cat "$p/name")" in
      lab.ctl) CTL=/dev/${p##*/} ;;
      lab.out) OUT=/dev/${p##*/} ;;
      lab.err) ERR=/dev/${p##*/} ;;
    esac
  done
  [ -n "$CTL" ] && [ -n "$OUT" ] && [ -n "$ERR" ] && [ -c "$CTL" ] && [ -c "$OUT" ] && [ -c "$ERR" ] && break
  usleep 20000
  i=$((i + 1))
done
[ -n "$CTL" ] || die "no control port (is virtio_console available?)"

read -r T_M0 _ </proc/uptime
if [ "$FS" = virtiofs ]; then
  mount -t virtiofs -o ro labroot /lower || die "cannot mount the host root over virtiofs"
else
  # cache=loose: the lower tree is read-only and the VM short-lived, so caching pages and
  # dentries is safe and makes node's many small file reads far cheaper over 9p.
  mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose labroot /lower || die "cannot mount the host root over 9p"
fi
# xino=on: without it stat() reports the lower (9p) device for files while the kernel's inode —
# what BPF sees in bprm->file, file->f_inode — is on the overlay's device, so any (dev, ino)
# identity a controller computes from stat() would never match in the guest. With xino both
# say: overlay device, inode number with the layer in its top bits.
read -r T_M1 _ </proc/uptime
mount -t tmpfs -o mode=0755 tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work,xino=on /newroot || die "cannot mount the overlay"

# the guest root's API filesystems, two `mount -a` (one process each, not one per mount: a fork
# and exec cost ~10 ms under TCG); /dev/pts and /dev/shm need their directories in the devtmpfs first.
# /tmp stays on the overlay (tmpfs upper): a tmpfs there would hide a checkout that lives under /tmp.
printf '%s\n' 'proc /newroot/proc proc defaults 0 0' 'sysfs /newroot/sys sysfs defaults 0 0' \
  'devtmpfs /newroot/dev devtmpfs defaults 0 0' >/etc/fstab.root
printf '%s\n' 'devpts /newroot/dev/pts devpts newinstance,ptmxmode=0666 0 0' 'tmpfs /newroot/dev/shm tmpfs defaults 0 0' \
  'tmpfs /newroot/run tmpfs defaults 0 0' 'bpf /newroot/sys/fs/bpf bpf defaults 0 0' \
  'tracefs /newroot/sys/kernel/tracing tracefs defaults 0 0' 'debugfs /newroot/sys/kernel/debug debugfs defaults 0 0' \
  'cgroup2 /newroot/sys/fs/cgroup cgroup2 defaults 0 0' 'securityfs /newroot/sys/kernel/security securityfs defaults 0 0' >/etc/fstab.api
mount -a -T /etc/fstab.root
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -a -T /etc/fstab.api
# The kernel runs its module loader (for "ip link add … type veth", "tc qdisc add … clsact" …) in
# PID 1's root, which is this initramfs: point it at /bin/lab-modprobe (in the archive: the host's
# modprobe inside the guest root, where the RUN script bind-mounts the guest kernel's modules).
echo /bin/lab-modprobe >/proc/sys/kernel/modprobe
echo lab-vm >/proc/sys/kernel/hostname
ip link set lo up

# DIAG (the host thinks the running command is stuck, lab/vm/hang.ts): each user task's state and
# wait channel, then the kernel's blocked-task report and every CPU's backtrace (sysrq w, l), on
# the console the host reads back. printk_devkmsg=on: /dev/kmsg would drop all but 10 lines per 5 s.
diag() {
  read -r lvl _ </proc/sys/kernel/printk
  echo 8 >/proc/sys/kernel/printk
  echo on >/proc/sys/kernel/printk_devkmsg
  read -r self _ </proc/self/stat # this shell (a builtin's redirection: no fork)
  for d in /proc/[0-9]*; do
    [ -e "$d/exe" ] && [ "${d#/proc/}" != "$self" ] || continue # kernel threads have no executable
    comm=; wchan=; st=
    read -r comm <"$d/comm"
    read -r wchan <"$d/wchan" # no newline there: read fails but keeps what it read
    while read -r k v _; do [ "$k" = State: ] && { st=$v; break; }; done <"$d/status"
    echo "lab-diag: task ${d#/proc/} ${st:-?} ${wchan:-0} $comm" >/dev/kmsg
  done 2>/dev/null
  echo w >/proc/sysrq-trigger
  echo l >/proc/sysrq-trigger
  echo "lab-diag: end" >/dev/kmsg
  echo "$lvl" >/proc/sys/kernel/printk
  echo DIAG-DONE >&3
}

exec 3<>"$CTL"
# the output ports are opened once, for every command of the guest: a virtio port refuses a second
# opener while one holds it (EBUSY), and a process a command left behind (a daemon, `x &`) held
# the last one's stdout, so every later command of the row failed at its redirection, silently
exec 4>"$OUT" 5>"$ERR"
read -r T_READY _ </proc/uptime
echo "READY $T_READY $T_INIT $T_M0 $T_M1" >&3
# the NIC's modules while the host sends the first command (RUN waits for them): loaded during
# the boot they took ~0.1 s from it, since under single-threaded TCG a background task still
# shares the one host thread with the boot's critical path
load net &
NETLOAD=$!
# where the kernel's text landed (KASLR), off the boot's critical path: the host symbolizes vCPU
# addresses with it when the guest stops answering
(grep -m1 ' _text$' /proc/kallsyms | { read -r a _; echo "KTEXT $a" >&3; }) &
while read -r cmd arg <&3; do
  case "$cmd" in
    RUN)
      [ -n "$NETLOAD" ] && wait "$NETLOAD"
      NETLOAD=
      echo "$arg" | base64 -d >/newroot/tmp/.lab-run.sh
      chroot /newroot /bin/sh /tmp/.lab-run.sh </dev/null >&4 2>&5 3>&- 4>&- 5>&- &
      run=$!
      # STOP (the host's Ctrl-C): the command gets SIGTERM (the runner's timeout(1) passes it on),
      # and a run stops as on the host — cleanups, its results so far — and answers EXIT as usual.
      # DIAG: see diag(). The watcher reads the channel only while the command runs: the host sends
      # nothing else then.
      (while read -r c _ <&3; do
        case "$c" in
          STOP) kill -TERM "$run" 2>/dev/null ;;
          DIAG) diag ;;
        esac
      done) &
      watch=$!
      wait "$run"
      rc=$?
      kill "$watch" 2>/dev/null
      wait "$watch" 2>/dev/null
      sync
      echo "EXIT $rc" >&3
      ;;
    BYE) break ;;
  esac
done
sync
poweroff -f
