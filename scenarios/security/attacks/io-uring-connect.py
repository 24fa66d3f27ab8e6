# connect(2) submitted through io_uring (IORING_OP_CONNECT) instead of the syscall, via raw
# syscalls from ctypes. The kernel's connect path (and its cgroup hook) is the same.
import ctypes, socket, struct
from _common import *
try:
    ring = Ring()
except OSError as e:
    print(json.dumps({"through": False, "detail": e.strerror, "unsupported": True})); sys.exit(0)
port = int(os.environ["TCP_PORT"])
s = socket.socket()
addr = ctypes.create_string_buffer(struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + socket.inet_aton("127.0.0.1") + bytes(8))
# IORING_OP_CONNECT (16): the sockaddr in addr, its length in off
res = ring.run(16, fd=s.fileno(), off=16, addr=ctypes.addressof(addr))
name = "ok" if res == 0 else errno.errorcode.get(-res, str(res))
report(res == 0 or -res in REACHED, f"io_uring IORING_OP_CONNECT 127.0.0.1:{port}: {name}")
