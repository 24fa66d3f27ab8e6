# python3's os.system → /bin/sh -c
from _common import *
rc = os.system(SHELL_CMD)
report(marker(), f"os.system: status {rc}")
