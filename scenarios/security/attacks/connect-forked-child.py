import socket
from _common import *
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    s = socket.socket()
    s.settimeout(3)
    t, d = net_result("child tcp connect", lambda: s.connect(("127.0.0.1", int(os.environ["TCP_PORT"]))))
    os.write(w, f"{int(t)}{d}".encode())
    os._exit(0)
os.waitpid(pid, 0)
msg = os.read(r, 200).decode()
report(msg[0] == "1", msg[1:])
