# a symlink with an innocent name: exec follows it to the shell's inode
from _common import *
dst = os.path.join(SCRATCH, "innocent-tool")
if os.path.lexists(dst):
    os.unlink(dst)
os.symlink("/usr/bin/bash", dst)
run_exec([dst, "-c", SHELL_CMD])
