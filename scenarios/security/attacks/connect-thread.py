import socket, threading
from _common import *
out = {}
def go():
    s = socket.socket()
    s.settimeout(3)
    out["r"] = net_result("thread tcp connect", lambda: s.connect(("127.0.0.1", int(os.environ["TCP_PORT"]))))
t = threading.Thread(target=go)
t.start()
t.join()
report(*out["r"])
