from _common import *
run_exec(["/usr/bin/dash", "-c", SHELL_CMD])
