# an IPv6 segment routing header set on a socket (IPV6_RTHDR: no privilege needed) sends each packet
# to its first segment while connect/sendmsg are shown the final address: a datagram to an allowed
# destination carries its payload to any address named as a segment. Here the segment is ::1 and
# the final address 2001:db8::1, which the policy allows; "through" = the datagram was sent.
import socket, struct
from _common import *
port = int(os.environ["ALLOWED_UDP_PORT"])
segs = [socket.inet_pton(socket.AF_INET6, a) for a in ("2001:db8::1", "::1")]  # final first, first hop last
srh = struct.pack("!BBBBBBH", 0, 2 * len(segs), 4, len(segs) - 1, len(segs) - 1, 0, 0) + b"".join(segs)
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
try:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RTHDR, srh)
except OSError as e:
    report(False, f"setsockopt(IPV6_RTHDR, segments 2001:db8::1 via ::1): {errno.errorcode.get(e.errno, e.errno)}")
report(*net_result(f"setsockopt(IPV6_RTHDR via ::1) accepted; sendto [2001:db8::1]:{port}", lambda: s.sendto(b"x", ("2001:db8::1", port))))
