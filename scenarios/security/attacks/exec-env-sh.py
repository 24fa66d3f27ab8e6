# env is allowed and looks sh up in PATH itself
from _common import *
run_exec(["/usr/bin/env", "sh", "-c", SHELL_CMD], env={"PATH": "/usr/bin:/bin"})
