# Sockets of non-inet network families (see other-families.py) made through io_uring's
# IORING_OP_SOCKET (5.19+) instead of socket(2), via raw syscalls from ctypes: where BPF LSM is
# missing, the socket(2) tracepoint never sees them. Each family in a child, because the fallback
# kills the task that submits one.
from _common import *
IORING_OP_SOCKET = 45
FAMILIES = {40: ("AF_VSOCK", 1), 5: ("AF_APPLETALK", 2), 24: ("AF_PPPOX", 1), 31: ("AF_BLUETOOTH", 1), 39: ("AF_NFC", 5), 41: ("AF_KCM", 2), 42: ("AF_QIPCRTR", 2), 43: ("AF_SMC", 1)}
MISSING = {errno.EAFNOSUPPORT, errno.ESOCKTNOSUPPORT, errno.EPROTONOSUPPORT, errno.EPROTOTYPE, errno.ENODEV}


def uring_socket(domain, typ):
    """the result of one IORING_OP_SOCKET: a descriptor (>= 0) or -errno; None: no io_uring here"""
    try:
        ring = Ring()
    except OSError:
        return None
    # fd = domain, off = type, len = protocol
    return ring.run(IORING_OP_SOCKET, fd=domain, off=typ)


opened, refused, missing = [], [], []
for fam, (name, typ) in FAMILIES.items():
    said, how = in_child(lambda: str(uring_socket(fam, typ)))
    if said == "None":
        unsupported("io_uring_setup failed: no io_uring for this user here")
    if not said:
        refused.append(f"{name}: child {how}")
    elif int(said) >= 0:
        opened.append(name)
    elif -int(said) == errno.EINVAL:
        # IORING_OP_SOCKET itself is unknown before 5.19
        missing.append(f"{name} (EINVAL: no IORING_OP_SOCKET?)")
    elif -int(said) in MISSING:
        missing.append(name)
    else:
        refused.append(f"{name}: {errno.errorcode.get(-int(said), said)}")
families_report(opened, refused, missing, "through IORING_OP_SOCKET ")
