# root inside the workload: an AF_PACKET socket sending a hand-built IPv4/UDP frame out of the veth
# towards the scenario's target namespace (below IP: no route, no socket hook). Done in a child,
# because where BPF LSM is missing the fallback kills the task that creates the socket.
import socket, struct
from _common import *
dst, port, dev, mac = os.environ["TARGET_IP"], int(os.environ["TARGET_PORT"]), os.environ["TARGET_DEV"], os.environ["TARGET_MAC"]
src = os.environ["TARGET_SRC"]
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
payload = b"packet-attack"
udp = struct.pack("!HHHH", 40001, port, 8 + len(payload), 0) + payload
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, socket.inet_aton(src), socket.inet_aton(dst))
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
if IA32:
    ia32_syscall(20)  # unsupported unless 32-bit syscalls work here
if X32:
    x32_syscall(39)  # unsupported unless x32 syscalls work here
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    try:
        if IA32 and os.environ.get("SOCKETCALL") == "1":  # 32-bit socketcall(SYS_SOCKET, args) (102), args below 4 GiB
            args = low_buffer(struct.pack("=III", socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800)))
            s = socket.socket(fileno=ia32_check(ia32_syscall(102, 1, args), "socketcall(SYS_SOCKET)"))
        elif IA32:  # the socket as a 32-bit socket() (359), used as usual after
            s = socket.socket(fileno=ia32_check(ia32_syscall(359, socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800)), "socket"))
        elif X32:  # the socket as an x32 socket() (41)
            s = socket.socket(fileno=ia32_check(x32_syscall(41, socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800)), "socket", "x32"))
        else:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
        s.sendto(ip + udp, (dev, 0x0800, 0, 0, bytes.fromhex(mac.replace(":", ""))))
        os.write(w, b"sent")
    except OSError as e:
        os.write(w, errno.errorcode.get(e.errno, str(e.errno)).encode())
    os._exit(0)
os.close(w)
how = wait_child(pid)
said = os.read(r, 100).decode()
report(said == "sent", f"AF_PACKET SOCK_DGRAM frame via {dev} → {dst}:{port}: child {said or 'said nothing'}, {how}")
