# the workload (uid nobody, no capabilities) opens /proc/<pid>/mem of a process of the same user that
# the policy does not select (VICTIM_PID: `sleep` outside the workload's cgroup), reads bytes of its
# stack and writes them back: what it would do to plant code or data there. The file is opened
# relative to a descriptor of /proc/<pid>, not by its full path, so a check of the path asked for
# would miss it. Done in a child, because where BPF LSM is missing the fallback kills the task that
# opened it.
from _common import *

yama_refuses("open")
if IA32:
    ia32_syscall(20)  # unsupported unless 32-bit syscalls work here
if X32:
    x32_syscall(39)  # unsupported unless x32 syscalls work here
VICTIM = int(os.environ["VICTIM_PID"])


def touch():
    # /proc/<pid>/maps needs ptrace's read mode only, which no policy here refuses
    with open(f"/proc/{VICTIM}/maps") as f:
        stack = next((l for l in f if l.rstrip().endswith("[stack]")), None)
    if not stack:
        return "no [stack] in the victim's maps"
    end = int(stack.split()[0].split("-")[1], 16)
    d = os.open(f"/proc/{VICTIM}", os.O_PATH | os.O_DIRECTORY)
    if IA32:  # the open as a 32-bit openat (295), its path below 4 GiB
        fd = ia32_check(ia32_syscall(295, d, low_buffer(b"mem\0"), os.O_RDWR), "openat")
    elif X32:  # the open as an x32 openat (257)
        fd = ia32_check(x32_syscall(257, d, low_buffer(b"mem\0"), os.O_RDWR), "openat", "x32")
    else:
        fd = os.open("mem", os.O_RDWR, dir_fd=d)
    got = os.pread(fd, 16, end - 16)
    put = os.pwrite(fd, got, end - 16)
    return f"opened, read {len(got)} bytes of its stack, wrote {put} back"


said, how = in_child(touch)
report(said.startswith("opened"), f"/proc/{VICTIM}/mem (outside the policy): child {said or 'said nothing'}, {how}")
