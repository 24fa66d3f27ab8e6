# Sockets of network families the egress hooks never see (only inet's connect and sendmsg run them):
# vsock reaches the hypervisor's host, AppleTalk/PPPoX/Bluetooth/NFC/... frames leave by their own
# paths. Which of them a kernel offers to an unprivileged user varies (Debian loads most as modules
# on demand): each family any type of which opens here is one way around an egress allowlist. Each
# is tried in a child, because where BPF LSM is missing the fallback kills the task at socket(2).
# SOCK_RAW is not tried: most families refuse it without CAP_NET_RAW (EPERM, like the policy).
import socket
from _common import *

FAMILIES = {3: "AF_AX25", 4: "AF_IPX", 5: "AF_APPLETALK", 9: "AF_X25", 21: "AF_RDS", 24: "AF_PPPOX", 26: "AF_LLC", 29: "AF_CAN", 30: "AF_TIPC",
            31: "AF_BLUETOOTH", 33: "AF_RXRPC", 35: "AF_PHONET", 36: "AF_IEEE802154", 37: "AF_CAIF", 39: "AF_NFC", 40: "AF_VSOCK", 41: "AF_KCM",
            42: "AF_QIPCRTR", 43: "AF_SMC", 45: "AF_MCTP"}
MISSING = {errno.EAFNOSUPPORT, errno.ESOCKTNOSUPPORT, errno.EPROTONOSUPPORT, errno.EPROTOTYPE, errno.EINVAL, errno.ENODEV, errno.ENOENT}


def try_family(fam):
    """'ok TYPE', or the errno names of every type tried"""
    errs = []
    for t in (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_SEQPACKET):
        try:
            socket.socket(fam, t, 0).close()
            return f"ok {t}"
        except OSError as e:
            errs.append(e.errno)
    return " ".join(errno.errorcode.get(e, str(e)) for e in errs)


opened, refused, missing = [], [], []
for fam, name in FAMILIES.items():
    said, how = in_child(lambda: try_family(fam))
    if said.startswith("ok"):
        opened.append(f"{name} (type {said.split()[1]})")
    elif not said:
        refused.append(f"{name}: child {how}")
    elif all(getattr(errno, n, None) in MISSING for n in said.split()):
        missing.append(name)
    else:
        refused.append(f"{name}: {said}")
families_report(opened, refused, missing, "")
