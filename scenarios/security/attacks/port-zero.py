# port 0 must not be read as "any port" by the policy; without a policy the kernel refuses it itself
import socket
from _common import *
s = socket.socket()
s.settimeout(3)
t1, d1 = net_result("tcp connect 127.0.0.1:0", lambda: s.connect(("127.0.0.1", 0)))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
t2, d2 = net_result("udp sendto 127.0.0.1:0", lambda: u.sendto(b"x", ("127.0.0.1", 0)))
report(t1 or t2, f"{d1}; {d2}")
