# a hard link is the same inode under another name. fs.protected_hardlinks stops an unprivileged
# workload from linking root's files, so the scenario (as root) prepares HARDLINK; we try anyway.
from _common import *
dst = os.path.join(SCRATCH, "hardlinked-tool")
try:
    os.link("/usr/bin/dash", dst)
except OSError:
    dst = os.environ["HARDLINK"]
run_exec([dst, "-c", SHELL_CMD])
