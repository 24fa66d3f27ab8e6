# an IPv6 socket talking to ::ffff:127.0.0.1 reaches an IPv4 listener
import socket
from _common import *
port = int(os.environ["TCP_PORT"])
s = socket.socket(socket.AF_INET6)
s.settimeout(3)
t1, d1 = net_result(f"tcp connect [::ffff:127.0.0.1]:{port}", lambda: s.connect(("::ffff:127.0.0.1", port)))
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
t2, d2 = net_result(f"udp sendto [::ffff:127.0.0.1]:{os.environ['UDP_PORT']}", lambda: u.sendto(b"x", ("::ffff:127.0.0.1", int(os.environ["UDP_PORT"]))))
report(t1 or t2, f"{d1}; {d2}")
