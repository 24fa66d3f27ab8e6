# Micro-benchmark loop run as the workload: prints ns per operation.
#   exec N     posix_spawn("/usr/bin/true") + waitpid, N times
#   connect N  connect + accept + close on a loopback listener this process owns, N times
import os, socket, sys, time

kind, n = sys.argv[1], int(sys.argv[2])
if kind == "exec":
    for _ in range(20):  # warm up page cache and the allocator
        os.waitpid(os.posix_spawn("/usr/bin/true", ["true"], {}), 0)
    t0 = time.perf_counter_ns()
    for _ in range(n):
        os.waitpid(os.posix_spawn("/usr/bin/true", ["true"], {}), 0)
    print((time.perf_counter_ns() - t0) / n)
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
    for _ in range(200):
        once()
    t0 = time.perf_counter_ns()
    for _ in range(n):
        once()
    print((time.perf_counter_ns() - t0) / n)
