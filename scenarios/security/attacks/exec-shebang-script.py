# a script with a shell shebang: the kernel's binfmt_script runs the interpreter
from _common import *
dst = os.path.join(SCRATCH, "job.sh")
with open(dst, "w") as f:
    f.write(f"#!/bin/sh\n{SHELL_CMD}\n")
os.chmod(dst, 0o755)
run_exec([dst])
