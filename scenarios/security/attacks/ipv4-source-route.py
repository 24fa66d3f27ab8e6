# an IPv4 loose source route (IP_OPTIONS on the socket, or IP_RETOPTS per message) sends the packet
# to the route's first hop (127.0.0.2), not to the allowed destination connect/sendmsg see
# (127.0.0.1): a TCP SYN and UDP datagrams. Kernels before a 2026 stable fix take it from any user.
import socket
from _common import *
udp, tcp = int(os.environ["ALLOWED_UDP_PORT"]), int(os.environ["PG_PORT"])
IP_OPTIONS, IP_RETOPTS = 4, 7
lsrr = bytes([1, 131, 11, 4]) + socket.inet_aton("127.0.0.2") + socket.inet_aton("0.0.0.0")  # NOP, LSRR: first hop, final
out = []
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
def sticky():
    s.setsockopt(socket.IPPROTO_IP, IP_OPTIONS, lsrr)
    s.sendto(b"x", ("127.0.0.1", udp))
out.append(net_result(f"setsockopt(IP_OPTIONS, LSRR via 127.0.0.2) + sendto 127.0.0.1:{udp}", sticky))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
out.append(net_result(f"sendmsg 127.0.0.1:{udp} with LSRR via 127.0.0.2 (control message IP_RETOPTS)", lambda: u.sendmsg([b"x"], [(socket.IPPROTO_IP, IP_RETOPTS, lsrr)], 0, ("127.0.0.1", udp))))
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.settimeout(1)  # the SYN reaches 127.0.0.2, which drops a source-routed packet: a timeout is "through"
def syn():
    t.setsockopt(socket.IPPROTO_IP, IP_OPTIONS, lsrr)
    try:
        t.connect(("127.0.0.1", tcp))
    except TimeoutError:
        raise OSError(errno.ETIMEDOUT, "timed out")
out.append(net_result(f"setsockopt(IP_OPTIONS, LSRR via 127.0.0.2) + TCP connect 127.0.0.1:{tcp}", syn))
report(any(t for t, _ in out), "; ".join(d for _, d in out))
