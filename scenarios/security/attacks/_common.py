# Shared by the Python attack scripts. Each attack tries one forbidden thing and prints one JSON
# line: {"through": bool, "detail": str}. "through" means the forbidden action happened (a shell
# ran and wrote the marker file; a connection or datagram passed the policy hook). The scenario
# does not trust this alone: it also checks the marker file and the kernel's events.
import errno, json, os, subprocess, sys

MARK = os.environ.get("MARK", "/tmp/ebpf-lab-mark")
SCRATCH = os.environ.get("SCRATCH", "/tmp")
SHELL_CMD = f"echo pwned > {MARK}"


def report(through, detail):
    print(json.dumps({"through": bool(through), "detail": detail}), flush=True)
    sys.exit(0)


def marker():
    return os.path.exists(MARK)


def describe_rc(rc):
    return f"killed by signal {-rc}" if rc < 0 else f"exit {rc}"


def run_exec(argv, **kw):
    """Run argv as a child; through = the shell ran (marker written)."""
    try:
        rc = subprocess.run(argv, stdin=subprocess.DEVNULL, **kw).returncode
        detail = describe_rc(rc)
    except OSError as e:
        detail = f"exec failed: {errno.errorcode.get(e.errno, e.errno)}"
    report(marker(), f"{' '.join(map(str, argv))[:80]}: {detail}")


def in_child(fn):
    """fn() in a forked child, where the fallback may kill it before it returns: what it returned
    (an OSError's text; '' if it died first) and how the child ended"""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            said = fn()
        except OSError as e:
            said = e.strerror or str(e)
        os.write(w, said.encode())
        os._exit(0)
    os.close(w)
    how = wait_child(pid)
    said = os.read(r, 300).decode()
    os.close(r)
    return said, how


def wait_child(pid):
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit {os.WEXITSTATUS(status)}"


# errors that mean the packet went out (the policy let it pass) and the network answered
REACHED = {errno.ECONNREFUSED, errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNRESET}


def net_result(what, fn):
    """through = the call passed the policy and reached the network: success or a network error.
    EPERM is the policy; EINVAL etc. is the kernel refusing the request before any hook runs."""
    try:
        fn()
        return True, f"{what}: ok"
    except OSError as e:
        name = errno.errorcode.get(e.errno, str(e.errno))
        return e.errno in REACHED, f"{what}: {name}"


def unsupported(detail):
    print(json.dumps({"through": False, "detail": detail, "unsupported": True}), flush=True)
    sys.exit(0)


def yama_refuses(what):
    """ends the attack as unsupported where Yama refuses attach-mode access to a non-child first"""
    try:
        scope = int(open("/proc/sys/kernel/yama/ptrace_scope").read())
    except OSError:
        scope = 0
    if scope > 0 and os.getuid() != 0:
        unsupported(f"Yama's ptrace_scope is {scope}: it refuses the {what} before any policy would")


def families_report(opened, refused, missing, how):
    """one verdict over many socket families: through when any opened; unsupported when none exists"""
    if not opened and not refused:
        unsupported(f"no non-inet network family opens {how}here: " + ", ".join(missing))
    report(bool(opened), "; ".join(x for x in [f"opened {how}".rstrip() + f": {', '.join(opened)}" if opened else "", f"refused: {'; '.join(refused)}" if refused else "", f"not in this kernel: {len(missing)}"] if x))


class Ring:
    """an io_uring through raw syscalls (ctypes, mmap of the rings: no liburing binding is
    installed), one operation at a time. OSError when io_uring_setup fails."""

    def __init__(self, entries=4, ia32=False):
        """ia32: the ring set up by a 32-bit io_uring_setup (int 0x80), which makes it a compat
        ring: the kernel runs its operations as 32-bit calls (a setsockopt skips the cgroup
        setsockopt programs), whoever submits them. Used from this 64-bit process all the same."""
        import ctypes, mmap
        U32 = ctypes.c_uint32

        class Params(ctypes.Structure):
            _fields_ = [("sq_entries", U32), ("cq_entries", U32), ("flags", U32), ("sq_thread_cpu", U32), ("sq_thread_idle", U32), ("features", U32), ("wq_fd", U32), ("resv", U32 * 3), ("sq_off", U32 * 10), ("cq_off", U32 * 10)]

        self.ctypes = ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.syscall.restype = ctypes.c_long
        if ia32:
            at = low_buffer(bytes(ctypes.sizeof(Params)))
            self.fd = ia32_syscall(425, entries, at)
            e = -self.fd
            self.p = p = Params.from_buffer_copy(ctypes.string_at(at, ctypes.sizeof(Params)))
        else:
            self.p = p = Params()
            self.fd = self.libc.syscall(425, entries, ctypes.byref(p))
            e = ctypes.get_errno()
        if self.fd < 0:
            raise OSError(e, f"io_uring_setup{' (32-bit)' if ia32 else ''}: {errno.errorcode.get(e, e)}")
        self.sq = mmap.mmap(self.fd, p.sq_off[6] + p.sq_entries * 4, offset=0)
        self.cq = mmap.mmap(self.fd, p.cq_off[5] + p.cq_entries * 16, offset=0x8000000)
        self.sqes = mmap.mmap(self.fd, p.sq_entries * 64, offset=0x10000000)

    def run(self, opcode, **sqe):
        """submit one SQE and wait for its completion: the CQE's res (>= 0, or -errno)"""
        return self.submit([dict(sqe, opcode=opcode)], wait=1)[0][1]

    def submit(self, sqes, wait=None):
        """submit the SQEs (dicts of opcode, fd, off, addr, length, op_flags, flags, file_index,
        addr3; user_data defaults to the index) in one io_uring_enter, waiting for `wait` of them
        (default: all): the CQEs then in the ring, as (user_data, res)"""
        import struct
        p = self.p
        tail = struct.unpack_from("=I", self.sq, p.sq_off[1])[0]
        mask = struct.unpack_from("=I", self.sq, p.sq_off[2])[0]
        for i, q in enumerate(sqes):
            sqe = bytearray(64)
            # opcode, flags, ioprio, fd, off, addr, len, op_flags (open flags, …), user_data; file_index
            # (a socket command's optlen) at 44, addr3 (its optval) at 48
            struct.pack_into("=BBHiQQIIQ", sqe, 0, q["opcode"], q.get("flags", 0), 0, q.get("fd", 0), q.get("off", 0), q.get("addr", 0), q.get("length", 0), q.get("op_flags", 0), q.get("user_data", i))
            struct.pack_into("=IQ", sqe, 44, q.get("file_index", 0), q.get("addr3", 0))
            slot = (tail + i) & mask
            self.sqes[slot * 64:slot * 64 + 64] = bytes(sqe)
            struct.pack_into("=I", self.sq, p.sq_off[6] + slot * 4, slot)
        struct.pack_into("=I", self.sq, p.sq_off[1], tail + len(sqes))
        n = len(sqes) if wait is None else wait
        self.libc.syscall(426, self.fd, len(sqes), n, 1 if n else 0, None, 0)  # io_uring_enter(to_submit, min_complete, GETEVENTS)
        return self.reap()

    def submit_in_child(self, sqes):
        """submit() from a forked child, which a fallback may kill at a completion: the completions
        by user_data (read here from the shared ring, or as the child reaped them if it lived), and
        how the child ended"""
        said, how = in_child(lambda: json.dumps(self.submit(sqes)))
        got = dict(self.reap())
        if not got and said.startswith("["):
            got = dict(json.loads(said))
        return got, how

    def reap(self):
        """the CQEs waiting in the ring, as (user_data, res), consumed"""
        import struct
        p, out = self.p, []
        head = struct.unpack_from("=I", self.cq, p.cq_off[0])[0]
        tail = struct.unpack_from("=I", self.cq, p.cq_off[1])[0]
        cmask = struct.unpack_from("=I", self.cq, p.cq_off[2])[0]
        while head != tail:
            out.append(struct.unpack_from("=Qi", self.cq, p.cq_off[5] + (head & cmask) * 16))
            head += 1
        struct.pack_into("=I", self.cq, p.cq_off[0], head)
        return out

    def register_files(self, fds):
        """IORING_REGISTER_FILES: -1 leaves a slot empty (a direct descriptor can be opened into it)"""
        arr = (self.ctypes.c_int * len(fds))(*fds)
        r = self.libc.syscall(427, self.fd, 2, arr, len(fds))
        return r if r >= 0 else -self.ctypes.get_errno()


# IA32=1: the attack makes its forbidden call as a 32-bit syscall (int 0x80), which any x86-64
# process can, and which fires no syscalls:* tracepoint: what a fallback hanging on one misses.
IA32 = os.environ.get("IA32") == "1"
_ia32 = None


def ia32_syscall(nr, a=0, b=0, c=0, d=0):
    """the 32-bit syscall nr(a, b, c, d): its result (-errno on failure). Ends the attack as
    unsupported where this is not x86-64 or the kernel has no ia32 emulation. Pointer arguments
    must lie below 4 GiB (low_buffer)."""
    global _ia32
    if _ia32 is None:
        import ctypes, mmap
        if os.uname().machine != "x86_64":
            unsupported(f"int 0x80 is x86-64's, not {os.uname().machine}'s")
        # push rbx; mov eax,edi; mov ebx,esi; xchg ecx,edx; mov esi,r8d; int 0x80; pop rbx; ret
        code = bytes.fromhex("53 89f8 89f3 87d1 4489c6 cd80 5b c3")
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        page[:len(code)] = code
        fn = ctypes.CFUNCTYPE(ctypes.c_int, *[ctypes.c_long] * 5)(ctypes.addressof(ctypes.c_char.from_buffer(page)))
        # a kernel without ia32 emulation answers int 0x80 with SIGSEGV: asked in a child first
        pid = os.fork()
        if pid == 0:
            os._exit(0 if fn(20, 0, 0, 0, 0) == os.getpid() else 1)  # ia32 getpid
        how = wait_child(pid)
        if how != "exit 0":
            unsupported(f"this kernel has no 32-bit syscalls (int 0x80 getpid: {how})")
        _ia32 = (page, fn)
    return _ia32[1](nr, a, b, c, d)


def low_buffer(data):
    """data in memory below 4 GiB (MAP_32BIT), where a 32-bit syscall's pointer can name it: its address"""
    import ctypes, mmap
    buf = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x40)
    buf[:len(data)] = data
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    if addr >= 1 << 32:
        unsupported(f"MAP_32BIT gave an address above 4 GiB ({addr:#x})")
    _low.append(buf)
    return addr


_low = []


def ia32_check(r, what, abi="32-bit"):
    """r from ia32_syscall or x32_syscall: raises OSError for -errno, else returns it"""
    if r < 0:
        raise OSError(-r, f"{what} ({abi}): {errno.errorcode.get(-r, -r)}")
    return r


# X32=1: the same call through the x32 ABI: bit 30 set in the number, from this 64-bit process,
# where the kernel takes such calls (CONFIG_X86_X32_ABI with syscall.x32=y: Debian builds it in,
# off by default). No syscalls:* tracepoint fires for them either.
X32 = os.environ.get("X32") == "1"
# X32_HIGH=1: with bits above 31 set in the number too, which kernels since 5.12 ignore (they take
# the low 32 bits of rax): a check that reads the whole register sees no x32 number
_X32_NR = (1 << 32 if os.environ.get("X32_HIGH") == "1" else 0) | 0x40000000
_x32 = None


def x32_syscall(nr, a=0, b=0, c=0, d=0):
    """the x32 syscall nr(a, b, c, d) (x86-64 registers; ptrace is 521, process_vm_readv 539): its
    result (-errno on failure). Ends the attack as unsupported where the kernel takes no x32 call."""
    import ctypes
    global _x32
    if _x32 is None:
        if os.uname().machine != "x86_64":
            unsupported(f"x32 is x86-64's, not {os.uname().machine}'s")
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        libc.syscall.argtypes = [ctypes.c_long] * 5
        ctypes.set_errno(0)
        if libc.syscall(_X32_NR | 39, 0, 0, 0, 0) != os.getpid():  # x32 getpid
            e = ctypes.get_errno()
            unsupported(f"this kernel takes no x32 syscalls (x32 getpid: {errno.errorcode.get(e, e)}; syscall.x32=y on its command line enables them where it has CONFIG_X86_X32_ABI)")
        _x32 = libc
    ctypes.set_errno(0)
    r = _x32.syscall(_X32_NR | nr, a, b, c, d)
    return r if r != -1 else -ctypes.get_errno()
