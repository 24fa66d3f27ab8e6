# Micro-benchmark loop run as the workload: prints "<wall ns/op> <cpu ns/op>". CPU time (this
# process and its reaped children, user + system) is what a probe adds to; unlike wall time it does
# not count the time other tenants of a shared machine hold the CPU.
#   exec N      posix_spawn("/usr/bin/true") + waitpid, N times
#   connect N   connect + accept + close on a loopback listener this process owns, N times
#   sendto N    sendto of a 16-byte UDP datagram, unconnected socket, to a loopback sink, N times
#               (every send runs the cgroup sendmsg4 hook and lsm/socket_sendmsg)
#   send N      send of a 16-byte UDP datagram on a connected socket to the same kind of sink
#               (no cgroup hook: the kernel runs sendmsg4 only for a send that names an address;
#               lsm/socket_sendmsg alone)
#   tcp-send N  send of 16 bytes on an established loopback TCP connection (TCP_NODELAY), the
#               receiving end drained every 64 sends (lsm/socket_sendmsg alone)
#   open N      open + close of a small regular file, N times (where BPF LSM is missing, the exit of
#               every open on the machine runs the /proc/<pid>/mem check)
#   syscall N   getppid, N times: the cheapest syscall, what every syscall of every process pays
#               (where BPF LSM is missing: the slow syscall path any syscall tracepoint puts every
#               task on, and the 32-bit syscall check at every syscall's exit)
# The UDP sink is never read: its receive buffer is the smallest the kernel allows, filled during
# the warm-up, after which every datagram goes the whole loopback path and is dropped at the sink's
# queue. The loop then times sends alone, no recv beside each one.
import os, resource, socket, sys, time

kind, n = sys.argv[1], int(sys.argv[2])


def cpu():
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return int((a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime) * 1e9)


def udp_sink():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the kernel's minimum
    s.bind(("127.0.0.1", 0))
    return s


PAYLOAD = b"x" * 16

if kind in ("exec", "connect"):
    if kind == "exec":
        def once():
            os.waitpid(os.posix_spawn("/usr/bin/true", ["true"], {}), 0)
        warm = 20
    else:
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(128)
        addr = srv.getsockname()

        def once():
            c = socket.socket()
            c.connect(addr)
            a, _ = srv.accept()
            a.close()
            c.close()
        warm = 200

    def loop(k):
        for _ in range(k):
            once()
elif kind in ("sendto", "send"):
    sink = udp_sink()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if kind == "sendto":
        def loop(k, f=s.sendto, p=PAYLOAD, a=sink.getsockname()):
            for _ in range(k):
                f(p, a)
    else:
        s.connect(sink.getsockname())

        def loop(k, f=s.send, p=PAYLOAD):
            for _ in range(k):
                f(p)
    warm = 2000  # well past the sink's buffer: every measured send is dropped there
elif kind == "tcp-send":
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    c = socket.create_connection(srv.getsockname())
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    a, _ = srv.accept()
    a.setblocking(False)

    def drain(r=a.recv):
        try:
            while r(65536):
                pass
        except BlockingIOError:
            pass

    def loop(k, f=c.send, p=PAYLOAD):
        for i in range(k):
            f(p)
            if i & 63 == 63:
                drain()
        drain()
    warm = 2000
elif kind == "open":
    def loop(k, o=os.open, c=os.close, f=sys.executable, r=os.O_RDONLY):
        for _ in range(k):
            c(o(f, r))
    warm = 2000
elif kind == "syscall":
    def loop(k, f=os.getppid):
        for _ in range(k):
            f()
    warm = 2000
else:
    sys.exit(f"unknown operation {kind}")
loop(warm)  # page cache, allocator, socket slabs (and the UDP sink's buffer)
t0, c0 = time.perf_counter_ns(), cpu()
loop(n)
print((time.perf_counter_ns() - t0) / n, (cpu() - c0) / n)
