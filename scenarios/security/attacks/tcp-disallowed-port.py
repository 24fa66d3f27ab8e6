import socket
from _common import *
s = socket.socket()
s.settimeout(3)
report(*net_result(f"tcp connect 127.0.0.1:{os.environ['TCP_PORT']}", lambda: s.connect(("127.0.0.1", int(os.environ["TCP_PORT"])))))
