# connect(2) submitted through io_uring (IORING_OP_CONNECT) instead of the syscall, via raw
# syscalls from ctypes. The kernel's connect path (and its cgroup hook) is the same.
import ctypes, mmap, socket, struct
from _common import *
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
U32 = ctypes.c_uint32
class Params(ctypes.Structure):
    _fields_ = [("sq_entries", U32), ("cq_entries", U32), ("flags", U32), ("sq_thread_cpu", U32), ("sq_thread_idle", U32), ("features", U32), ("wq_fd", U32), ("resv", U32 * 3), ("sq_off", U32 * 10), ("cq_off", U32 * 10)]
p = Params()
fd = libc.syscall(425, 4, ctypes.byref(p))
if fd < 0:
    e = ctypes.get_errno()
    print(json.dumps({"through": False, "detail": f"io_uring_setup: {errno.errorcode.get(e, e)}", "unsupported": True})); sys.exit(0)
sq = mmap.mmap(fd, p.sq_off[6] + p.sq_entries * 4, offset=0)
cq = mmap.mmap(fd, p.cq_off[5] + p.cq_entries * 16, offset=0x8000000)
sqes = mmap.mmap(fd, p.sq_entries * 64, offset=0x10000000)
port = int(os.environ["TCP_PORT"])
s = socket.socket()
addr = ctypes.create_string_buffer(struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + socket.inet_aton("127.0.0.1") + bytes(8))
sqe = bytearray(64)
struct.pack_into("=BBHiQQII Q", sqe, 0, 16, 0, 0, s.fileno(), 16, ctypes.addressof(addr), 0, 0, 7)
sqes[0:64] = bytes(sqe)
tail = struct.unpack_from("=I", sq, p.sq_off[1])[0]
mask = struct.unpack_from("=I", sq, p.sq_off[2])[0]
struct.pack_into("=I", sq, p.sq_off[6] + (tail & mask) * 4, 0)
struct.pack_into("=I", sq, p.sq_off[1], tail + 1)
n = libc.syscall(426, fd, 1, 1, 1, None, 0)
head = struct.unpack_from("=I", cq, p.cq_off[0])[0]
cmask = struct.unpack_from("=I", cq, p.cq_off[2])[0]
_, res, _ = struct.unpack_from("=QiI", cq, p.cq_off[5] + (head & cmask) * 16)
name = "ok" if res == 0 else errno.errorcode.get(-res, str(res))
report(res == 0 or -res in REACHED, f"io_uring IORING_OP_CONNECT 127.0.0.1:{port}: {name}")
