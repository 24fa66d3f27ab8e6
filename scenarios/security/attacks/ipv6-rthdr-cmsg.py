# a type 2 (Mobile IPv6) routing header given per message (sendmsg control message IPV6_RTHDR) or
# as the old API's sticky options (setsockopt IPV6_2292PKTOPTIONS): no privilege needed where the
# kernel has Mobile IPv6 (Debian's do), and the datagram goes to the header's address (::1), not
# to the allowed destination connect/sendmsg see (2001:db8::1). "through" = a datagram was sent.
import socket, struct
from _common import *
port = int(os.environ["ALLOWED_UDP_PORT"])
IPV6_2292PKTOPTIONS = 6
rt2 = struct.pack("!BBBBI", 0, 2, 2, 1, 0) + socket.inet_pton(socket.AF_INET6, "::1")
dst = ("2001:db8::1", port)
out, refused = [], 0
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
out.append(net_result(f"sendmsg [2001:db8::1]:{port} with a type 2 routing header via ::1 (control message)", lambda: s.sendmsg([b"x"], [(socket.IPPROTO_IPV6, socket.IPV6_RTHDR, rt2)], 0, dst)))
s2 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
cmsg = struct.pack("@Qii", socket.CMSG_LEN(len(rt2)), socket.IPPROTO_IPV6, socket.IPV6_RTHDR) + rt2
cmsg += b"\0" * (socket.CMSG_SPACE(len(rt2)) - len(cmsg))
def sticky():
    s2.setsockopt(socket.IPPROTO_IPV6, IPV6_2292PKTOPTIONS, cmsg)
    s2.sendto(b"x", dst)
out.append(net_result(f"setsockopt(IPV6_2292PKTOPTIONS, type 2 routing header via ::1) + sendto [2001:db8::1]:{port}", sticky))
if all("EINVAL" in d for _, d in out):
    print(json.dumps({"through": False, "detail": "the kernel takes no type 2 routing header (no Mobile IPv6): " + "; ".join(d for _, d in out), "unsupported": True}), flush=True)
    sys.exit(0)
report(any(t for t, _ in out), "; ".join(d for _, d in out))
