# positive control: exec of an allowed non-shell binary
from _common import *
r = subprocess.run(["/usr/bin/id", "-u"], capture_output=True, text=True)
report(r.returncode == 0, f"/usr/bin/id -u → {r.stdout.strip()} ({describe_rc(r.returncode)})")
