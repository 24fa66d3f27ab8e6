# Micro-benchmark loop run as the workload: prints "<wall ns/op> <cpu ns/op>". CPU time (this
# process and its reaped children, user + system) is what a probe adds to; unlike wall time it does
# not count the time other tenants of a shared machine hold the CPU.
#   exec N     posix_spawn("/usr/bin/true") + waitpid, N times
#   connect N  connect + accept + close on a loopback listener this process owns, N times
import os, resource, socket, sys, time

kind, n = sys.argv[1], int(sys.argv[2])


def cpu():
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return int((a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime) * 1e9)


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
for _ in range(warm):  # page cache, allocator, socket slabs
    once()
t0, c0 = time.perf_counter_ns(), cpu()
for _ in range(n):
    once()
print((time.perf_counter_ns() - t0) / n, (cpu() - c0) / n)
