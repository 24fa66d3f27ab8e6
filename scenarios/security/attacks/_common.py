# Shared by the Python attack scripts. Each attack tries one forbidden thing and prints one JSON
# line: {"through": bool, "detail": str}. "through" means the forbidden action happened (a shell
# ran and wrote the marker file; a connection or datagram passed the policy hook). The scenario
# does not trust this alone: it also checks the marker file and the kernel's events.
import errno, json, os, subprocess, sys

MARK = os.environ.get("MARK", "/tmp/ebpf-lab-mark")
SCRATCH = os.environ.get("SCRATCH", "/tmp")
SHELL_CMD = f"echo pwned > {MARK}"


def report(through, detail):
    print(json.dumps({"through": bool(through), "detail": detail}), flush=True)
    sys.exit(0)


def marker():
    return os.path.exists(MARK)


def describe_rc(rc):
    return f"killed by signal {-rc}" if rc < 0 else f"exit {rc}"


def run_exec(argv, **kw):
    """Run argv as a child; through = the shell ran (marker written)."""
    try:
        rc = subprocess.run(argv, stdin=subprocess.DEVNULL, **kw).returncode
        detail = describe_rc(rc)
    except OSError as e:
        detail = f"exec failed: {errno.errorcode.get(e.errno, e.errno)}"
    report(marker(), f"{' '.join(map(str, argv))[:80]}: {detail}")


def in_child(fn):
    """fn() in a forked child, where the fallback may kill it before it returns: what it returned
    (an OSError's text; '' if it died first) and how the child ended"""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            said = fn()
        except OSError as e:
            said = e.strerror or str(e)
        os.write(w, said.encode())
        os._exit(0)
    os.close(w)
    how = wait_child(pid)
    said = os.read(r, 300).decode()
    os.close(r)
    return said, how


def wait_child(pid):
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit {os.WEXITSTATUS(status)}"


# errors that mean the packet went out (the policy let it pass) and the network answered
REACHED = {errno.ECONNREFUSED, errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNRESET}


def net_result(what, fn):
    """through = the call passed the policy and reached the network: success or a network error.
    EPERM is the policy; EINVAL etc. is the kernel refusing the request before any hook runs."""
    try:
        fn()
        return True, f"{what}: ok"
    except OSError as e:
        name = errno.errorcode.get(e.errno, str(e.errno))
        return e.errno in REACHED, f"{what}: {name}"


def unsupported(detail):
    print(json.dumps({"through": False, "detail": detail, "unsupported": True}), flush=True)
    sys.exit(0)


def yama_refuses(what):
    """ends the attack as unsupported where Yama refuses attach-mode access to a non-child first"""
    try:
        scope = int(open("/proc/sys/kernel/yama/ptrace_scope").read())
    except OSError:
        scope = 0
    if scope > 0 and os.getuid() != 0:
        unsupported(f"Yama's ptrace_scope is {scope}: it refuses the {what} before any policy would")


def families_report(opened, refused, missing, how):
    """one verdict over many socket families: through when any opened; unsupported when none exists"""
    if not opened and not refused:
        unsupported(f"no non-inet network family opens {how}here: " + ", ".join(missing))
    report(bool(opened), "; ".join(x for x in [f"opened {how}".rstrip() + f": {', '.join(opened)}" if opened else "", f"refused: {'; '.join(refused)}" if refused else "", f"not in this kernel: {len(missing)}"] if x))
