# Multipath TCP (IPPROTO_MPTCP): the connection is made by a TCP subflow the kernel opens for the
# MPTCP socket. To the port the policy does not allow, v4 and v6.
import socket
from _common import *
port = int(os.environ["TCP_PORT"])
IPPROTO_MPTCP = 262
out = []
for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    try:
        s = socket.socket(fam, socket.SOCK_STREAM, IPPROTO_MPTCP)
    except OSError as e:
        print(json.dumps({"through": False, "detail": f"no MPTCP here: socket(IPPROTO_MPTCP): {errno.errorcode.get(e.errno, e.errno)}", "unsupported": True}), flush=True)
        sys.exit(0)
    s.settimeout(3)
    out.append(net_result(f"MPTCP connect {host} port {port}", lambda: s.connect((host, port))))
    s.close()
report(any(t for t, _ in out), "; ".join(d for _, d in out))
