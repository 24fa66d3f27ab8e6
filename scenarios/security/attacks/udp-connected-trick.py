# connect a UDP socket to an allowed destination, then sendto() somewhere else on it; and connect()
# a UDP socket straight to a disallowed port (send() then needs no address the hook could see)
import socket
from _common import *
ok_port = int(os.environ["ALLOWED_UDP_PORT"])
bad = ("127.0.0.1", int(os.environ["UDP_PORT"]))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
t0, d0 = net_result(f"udp connect allowed :{ok_port} + send", lambda: (u.connect(("127.0.0.1", ok_port)), u.send(b"ok")))
t1, d1 = net_result(f"sendto {bad[1]} on it", lambda: u.sendto(b"x", bad))
v = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
t2, d2 = net_result(f"udp connect {bad[1]} + send", lambda: (v.connect(bad), v.send(b"x")))
report(t1 or t2, f"{d0}; {d1}; {d2}")
