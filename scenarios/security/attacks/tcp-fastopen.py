# TCP Fast Open: the connection is opened by sendto(MSG_FASTOPEN) carrying data, without connect(2),
# and by connect(2) on a TCP_FASTOPEN_CONNECT socket, whose SYN leaves with the first write. Both
# to the port the policy does not allow, over IPv4 and IPv6.
import socket
from _common import *
port = int(os.environ["TCP_PORT"])
MSG_FASTOPEN = getattr(socket, "MSG_FASTOPEN", 0x20000000)
TCP_FASTOPEN_CONNECT = 30
out = []


def fastopen_send(s, host):
    try:
        s.sendto(b"x", MSG_FASTOPEN, (host, port))
    except BlockingIOError:
        pass  # EINPROGRESS: the SYN with the data is out (a timeout makes the socket non-blocking)


for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(3)
    out.append(net_result(f"sendto(MSG_FASTOPEN) {host} port {port}", lambda: fastopen_send(s, host)))
    s.close()
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(3)
    s.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1)
    out.append(net_result(f"TCP_FASTOPEN_CONNECT {host} port {port}", lambda: (s.connect((host, port)), s.send(b"x"))))
    s.close()
report(any(t for t, _ in out), "; ".join(d for _, d in out))
