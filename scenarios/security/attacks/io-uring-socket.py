# Sockets of non-inet network families (see other-families.py) made through io_uring's
# IORING_OP_SOCKET (5.19+) instead of socket(2), via raw syscalls from ctypes: where BPF LSM is
# missing, the socket(2) tracepoint never sees them. Each family in a child, because the fallback
# kills the task that submits one.
import ctypes, mmap, struct
from _common import *
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
U32 = ctypes.c_uint32
IORING_OP_SOCKET = 45
FAMILIES = {40: ("AF_VSOCK", 1), 5: ("AF_APPLETALK", 2), 24: ("AF_PPPOX", 1), 31: ("AF_BLUETOOTH", 1), 39: ("AF_NFC", 5), 41: ("AF_KCM", 2), 42: ("AF_QIPCRTR", 2), 43: ("AF_SMC", 1)}
MISSING = {errno.EAFNOSUPPORT, errno.ESOCKTNOSUPPORT, errno.EPROTONOSUPPORT, errno.EPROTOTYPE, errno.ENODEV}


class Params(ctypes.Structure):
    _fields_ = [("sq_entries", U32), ("cq_entries", U32), ("flags", U32), ("sq_thread_cpu", U32), ("sq_thread_idle", U32), ("features", U32), ("wq_fd", U32), ("resv", U32 * 3), ("sq_off", U32 * 10), ("cq_off", U32 * 10)]


def uring_socket(domain, typ):
    """the result of one IORING_OP_SOCKET: a descriptor (>= 0) or -errno; None: no io_uring here"""
    p = Params()
    fd = libc.syscall(425, 4, ctypes.byref(p))
    if fd < 0:
        return None
    sq = mmap.mmap(fd, p.sq_off[6] + p.sq_entries * 4, offset=0)
    cq = mmap.mmap(fd, p.cq_off[5] + p.cq_entries * 16, offset=0x8000000)
    sqes = mmap.mmap(fd, p.sq_entries * 64, offset=0x10000000)
    sqe = bytearray(64)
    # opcode, flags, ioprio, fd = domain, off = type, addr, len = protocol, rw_flags, user_data
    struct.pack_into("=BBHiQQII Q", sqe, 0, IORING_OP_SOCKET, 0, 0, domain, typ, 0, 0, 0, 7)
    sqes[0:64] = bytes(sqe)
    tail = struct.unpack_from("=I", sq, p.sq_off[1])[0]
    mask = struct.unpack_from("=I", sq, p.sq_off[2])[0]
    struct.pack_into("=I", sq, p.sq_off[6] + (tail & mask) * 4, 0)
    struct.pack_into("=I", sq, p.sq_off[1], tail + 1)
    libc.syscall(426, fd, 1, 1, 1, None, 0)
    head = struct.unpack_from("=I", cq, p.cq_off[0])[0]
    cmask = struct.unpack_from("=I", cq, p.cq_off[2])[0]
    return struct.unpack_from("=QiI", cq, p.cq_off[5] + (head & cmask) * 16)[1]


opened, refused, missing = [], [], []
for fam, (name, typ) in FAMILIES.items():
    said, how = in_child(lambda: str(uring_socket(fam, typ)))
    if said == "None":
        unsupported("io_uring_setup failed: no io_uring for this user here")
    if not said:
        refused.append(f"{name}: child {how}")
    elif int(said) >= 0:
        opened.append(name)
    elif -int(said) == errno.EINVAL:
        # IORING_OP_SOCKET itself is unknown before 5.19
        missing.append(f"{name} (EINVAL: no IORING_OP_SOCKET?)")
    elif -int(said) in MISSING:
        missing.append(name)
    else:
        refused.append(f"{name}: {errno.errorcode.get(-int(said), said)}")
families_report(opened, refused, missing, "through IORING_OP_SOCKET ")
