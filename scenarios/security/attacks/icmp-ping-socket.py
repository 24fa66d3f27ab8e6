# ICMP datagram ("ping") sockets, open to every user where ping_group_range allows it (systemd's
# default): an echo request carries any payload to any address, sent with sendto on an unconnected
# socket, which the kernel does not show the cgroup sendmsg hooks. v4 and v6.
import socket, struct
from _common import *
out = []
for fam, proto, host, typ in ((socket.AF_INET, socket.IPPROTO_ICMP, "127.0.0.1", 8), (socket.AF_INET6, socket.IPPROTO_ICMPV6, "::1", 128)):
    def send():
        s = socket.socket(fam, socket.SOCK_DGRAM, proto)
        s.settimeout(2)
        s.sendto(struct.pack("!BBHHH", typ, 0, 0, 0, 1) + b"exfiltrated", (host, 0))
    out.append(net_result(f"ICMP echo to {host} from a ping socket", send))
report(any(t for t, _ in out), "; ".join(d for _, d in out))
