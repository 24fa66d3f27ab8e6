# several datagrams in one sendmmsg(2) call (libc via ctypes: Python has no binding); the hook must
# run for each message, not once per syscall
import ctypes, socket, struct
from _common import *
libc = ctypes.CDLL(None, use_errno=True)
class iovec(ctypes.Structure): _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
class msghdr(ctypes.Structure): _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.POINTER(iovec)), ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t), ("flags", ctypes.c_int)]
class mmsghdr(ctypes.Structure): _fields_ = [("hdr", msghdr), ("len", ctypes.c_uint)]
port = int(os.environ["UDP_PORT"])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sa = ctypes.create_string_buffer(struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + socket.inet_aton("127.0.0.1") + bytes(8))
data = ctypes.create_string_buffer(b"mmsg")
iov = iovec(ctypes.cast(data, ctypes.c_void_p), 4)
msgs = (mmsghdr * 3)(*[mmsghdr(msghdr(ctypes.cast(sa, ctypes.c_void_p), 16, ctypes.pointer(iov), 1, None, 0, 0), 0) for _ in range(3)])
n = libc.sendmmsg(s.fileno(), msgs, 3, 0)
e = ctypes.get_errno()
report(n > 0, f"sendmmsg 3 datagrams → 127.0.0.1:{port}: {'sent ' + str(n) if n > 0 else errno.errorcode.get(e, e)}")
