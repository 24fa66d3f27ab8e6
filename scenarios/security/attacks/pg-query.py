# positive control: the workload's real job, a query to PostgreSQL on the allowed port
from _common import *
r = subprocess.run([os.environ["PSQL"], "-h", "127.0.0.1", "-p", os.environ["PG_PORT"], "-U", "postgres", "-d", "postgres", "-tAc", "select 6*7"],
                   capture_output=True, text=True, env={"PGCONNECT_TIMEOUT": "5", "HOME": SCRATCH})
report(r.returncode == 0 and r.stdout.strip() == "42", f"psql select 6*7 → {r.stdout.strip() or r.stderr.strip()[:80]} ({describe_rc(r.returncode)})")
