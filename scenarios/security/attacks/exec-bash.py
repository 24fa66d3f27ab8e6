from _common import *
run_exec(["/bin/bash", "-c", SHELL_CMD])
