# root inside the workload: a raw IPv4 socket (SOCK_RAW, IPPROTO_UDP) with a hand-built UDP header
# to the scenario's target namespace. Raw sockets never pass the connect/sendmsg hooks: only
# refusing the socket itself stops this (cgroup/sock_create, lsm/socket_create).
import socket, struct
from _common import *
dst, port = os.environ["TARGET_IP"], int(os.environ["TARGET_PORT"])
def go():
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    payload = b"raw-attack"
    s.sendto(struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload, (dst, 0))
report(*net_result(f"AF_INET SOCK_RAW udp → {dst}:{port}", go))
