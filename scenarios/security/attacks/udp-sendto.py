import socket
from _common import *
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
report(*net_result(f"udp sendto 127.0.0.1:{os.environ['UDP_PORT']}", lambda: s.sendto(b"x", ("127.0.0.1", int(os.environ["UDP_PORT"])))))
