# the shell is started by a forked grandchild (double fork, as daemonising code does)
from _common import *
pid = os.fork()
if pid == 0:
    gpid = os.fork()
    if gpid == 0:
        try:
            os.execv("/bin/sh", ["sh", "-c", SHELL_CMD])
        except OSError as e:
            os._exit(100 + e.errno)
    _, st = os.waitpid(gpid, 0)
    os._exit(0)
os.waitpid(pid, 0)
report(marker(), "grandchild exec /bin/sh")
