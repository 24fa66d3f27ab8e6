// What the kernel does for us when this Node process dies without its teardown (SIGKILL, OOM, a
// test harness's budget): setpriv --pdeathsig has the kernel signal a child when its parent dies.
// That reaches one process only. QEMU started by the lab is that child (qemu.ts); under virtme-ng
// it is vng's grandchild (vng → virtme-run → qemu, all in vng's process group), and a run killed
// outright left that guest at full CPU for the rest of a CI job. The group reaper is a sh that
// leads the group and, on its parent's death, kills the group it leads.
import { existsSync } from 'node:fs';

export const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));

/** argv that runs `cmd args` and has the kernel SIGKILL it if this process dies first */
export function dyingWithUs(cmd: string, args: string[]): [string, string[]] {
  return SETPRIV ? [SETPRIV, ['--pdeathsig', 'KILL', '--', cmd, ...args]] : [cmd, args];
}

/**
 * argv that runs `cmd args` under a sh which, when this process dies, kills its whole process
 * group: spawn it `detached` so that group is the command's own (and its descendants'). Its exit
 * status is the command's (128+n when a signal ended it).
 */
export function groupDyingWithUs(cmd: string, args: string[]): [string, string[]] {
  // TERM, not KILL, to the sh: its trap turns it into KILL for the group. `wait` returns on a
  // trapped signal, so the trap runs at once. The command runs in the background of a
  // non-interactive sh, with stdin from /dev/null and SIGINT ignored: nothing sends it either.
  const sh = ['-c', 'trap "kill -KILL 0" TERM; "$@" & wait $!', 'lab-reaper', cmd, ...args];
  return SETPRIV ? [SETPRIV, ['--pdeathsig', 'TERM', '--', '/bin/sh', ...sh]] : ['/bin/sh', sh];
}
