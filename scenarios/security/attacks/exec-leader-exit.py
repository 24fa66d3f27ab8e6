# the shell is started by a worker thread after the main thread has exited on its own (SYS_exit of
# the leader alone, as pthread_exit in main does): the process lives on in the worker. A selection
# dropped when the leader exits would let it through.
import ctypes, threading, time
from _common import *


def worker():
    time.sleep(0.5)
    try:
        rc = subprocess.run(["/bin/sh", "-c", SHELL_CMD], stdin=subprocess.DEVNULL).returncode
        detail = describe_rc(rc)
    except OSError as e:
        detail = f"exec failed: {errno.errorcode.get(e.errno, e.errno)}"
    print(json.dumps({"through": marker(), "detail": f"/bin/sh from a thread after the leader exited: {detail}"}), flush=True)
    os._exit(0)


threading.Thread(target=worker).start()
ctypes.CDLL(None).syscall(60 if os.uname().machine == "x86_64" else 93, 0)
