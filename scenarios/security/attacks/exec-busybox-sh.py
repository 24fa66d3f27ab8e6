# busybox runs its sh applet: the binary is busybox, the shell is inside it
from _common import *
run_exec(["/bin/busybox", "sh", "-c", SHELL_CMD])
