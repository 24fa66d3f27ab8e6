# SCTP and DCCP to a port the policy does not allow, v4. SCTP: connect(), connectx (setsockopt
# SCTP_SOCKOPT_CONNECTX, no connect(2) at all) and sendto a new peer on a one-to-many socket, which
# sets up an association by itself; DCCP: connect. Each protocol is a module any user loads by
# opening a socket; unsupported where the kernel has neither.
import socket, struct
from _common import *
port = int(os.environ["TCP_PORT"])
IPPROTO_SCTP, SCTP_SOCKOPT_CONNECTX, SOCK_DCCP, IPPROTO_DCCP = 132, 110, 6, 33
MISSING = {errno.EPROTONOSUPPORT, errno.ESOCKTNOSUPPORT, errno.EAFNOSUPPORT}
out, missing = [], []

def sock(kind, typ, proto):
    """the socket, or None: missing from this kernel (noted) or refused (EPERM: the policy)"""
    try:
        return socket.socket(socket.AF_INET, typ, proto)
    except OSError as e:
        name = errno.errorcode.get(e.errno, e.errno)
        (missing if e.errno in MISSING else out).append((False, f"socket({kind}): {name}"))
        return None

st = sock("SCTP stream", socket.SOCK_STREAM, IPPROTO_SCTP)
if st:
    st.settimeout(3)
    out.append(net_result(f"SCTP connect 127.0.0.1:{port}", lambda: st.connect(("127.0.0.1", port))))
sx = sock("SCTP stream", socket.SOCK_STREAM, IPPROTO_SCTP)
if sx:
    addr = struct.pack("=HH4s8x", socket.AF_INET, socket.htons(port), socket.inet_aton("127.0.0.1"))
    out.append(net_result(f"SCTP connectx 127.0.0.1:{port}", lambda: sx.setsockopt(IPPROTO_SCTP, SCTP_SOCKOPT_CONNECTX, addr)))
sq = sock("SOCK_SEQPACKET, protocol 0: SCTP", socket.SOCK_SEQPACKET, 0)
if sq:
    out.append(net_result(f"SCTP sendto 127.0.0.1:{port} (one-to-many socket: a new association)", lambda: sq.sendto(b"x", ("127.0.0.1", port))))
dc = sock("DCCP", SOCK_DCCP, IPPROTO_DCCP)
if dc:
    dc.settimeout(3)
    out.append(net_result(f"DCCP connect 127.0.0.1:{port}", lambda: dc.connect(("127.0.0.1", port))))
if not out:
    print(json.dumps({"through": False, "detail": "no SCTP or DCCP here: " + "; ".join(d for _, d in missing), "unsupported": True}), flush=True)
    sys.exit(0)
report(any(t for t, _ in out), "; ".join(d for _, d in out + missing))
