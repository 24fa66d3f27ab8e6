# the unspecified address reaches this host: the kernel routes 0.0.0.0 and ::ffff:0.0.0.0 to
# 127.0.0.1 and :: to ::1. TCP connects and a UDP datagram, to ports the policy does not allow.
import socket
from _common import *
tcp, udp = int(os.environ["TCP_PORT"]), int(os.environ["UDP_PORT"])
out = []
for fam, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::ffff:0.0.0.0"), (socket.AF_INET6, "::")):
    s = socket.socket(fam)
    s.settimeout(3)
    out.append(net_result(f"tcp connect {host} port {tcp}", lambda: s.connect((host, tcp))))
    s.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
out.append(net_result(f"udp sendto 0.0.0.0 port {udp}", lambda: u.sendto(b"x", ("0.0.0.0", udp))))
report(any(t for t, _ in out), "; ".join(d for _, d in out))
