# Functional client of the socket-lb scenario and tests, run inside the balanced cgroup.
#   client.py once  tcp|udp|udpc ADDR PORT [N]  N requests, one JSON line each:
#       {"reply": <backend that answered>, "peer": <getpeername()/recvfrom() address the app sees>}
#   client.py hold ADDR PORT   one TCP connection; a request per line on stdin, one JSON line per reply
#       (the connection stays open across backend changes)
import json, socket, sys

def fmt(a):
    return f"[{a[0]}]:{a[1]}" if ":" in a[0] else f"{a[0]}:{a[1]}"

def fam(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET

def out(**kw):
    print(json.dumps(kw), flush=True)

mode = sys.argv[1]
if mode == "once":
    proto, addr, port = sys.argv[2], sys.argv[3], int(sys.argv[4])
else:
    proto, addr, port = "tcp", sys.argv[2], int(sys.argv[3])
if mode == "once":
    n = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    for _ in range(n):
        try:
            if proto == "tcp":
                s = socket.socket(fam(addr), socket.SOCK_STREAM)
                s.settimeout(3)
                s.connect((addr, port))
                s.sendall(b"x")
                r = s.recv(128).decode().strip()
                out(reply=r, peer=fmt(s.getpeername()))
                s.close()
            elif proto == "udp":
                s = socket.socket(fam(addr), socket.SOCK_DGRAM)
                s.settimeout(3)
                s.sendto(b"x", (addr, port))
                data, src = s.recvfrom(128)
                out(reply=data.decode().strip(), peer=fmt(src))
                s.close()
            else:  # connected UDP
                s = socket.socket(fam(addr), socket.SOCK_DGRAM)
                s.settimeout(3)
                s.connect((addr, port))
                s.send(b"x")
                data = s.recv(128)
                out(reply=data.decode().strip(), peer=fmt(s.getpeername()))
                s.close()
        except Exception as e:
            out(error=f"{type(e).__name__}: {e}")
else:
    s = socket.socket(fam(addr), socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect((addr, port))
    for line in sys.stdin:
        try:
            s.sendall(b"x")
            out(reply=s.recv(128).decode().strip(), peer=fmt(s.getpeername()))
        except Exception as e:
            out(error=f"{type(e).__name__}: {e}")
