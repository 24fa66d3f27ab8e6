# plain /bin/sh -c
from _common import *
run_exec(["/bin/sh", "-c", SHELL_CMD])
