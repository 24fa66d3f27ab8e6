# rename the process (comm) before exec: comm-based policies would be fooled
import ctypes
from _common import *
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_NAME = 15
pid = os.fork()
if pid == 0:
    libc.prctl(PR_SET_NAME, b"postgres", 0, 0, 0)
    try:
        os.execv("/bin/sh", ["postgres", "-c", SHELL_CMD])
    except OSError as e:
        os._exit(100 + e.errno)
report(marker(), f"prctl(PR_SET_NAME, postgres) + exec /bin/sh: {wait_child(pid)}")
