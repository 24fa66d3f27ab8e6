// Run in a guest by nolsm-vm.test.ts (node --import tsx): what a build that took inactive BPF LSM
// for working left behind, its LSM programs' links pinned where the daemon adopts them.
import path from 'node:path';
import { ensureObject } from '../../../bpf/build.ts';
import { BpfObject, attachLsm, makePinDir } from '../../libbpf/index.ts';
import { LINK_DIR } from '../controller.ts';

const LSM = ['sec_exec_lsm', 'sec_connect_lsm', 'sec_socket_lsm', 'sec_ptrace_lsm', 'sec_sendmsg_lsm'];
const o = BpfObject.open(await ensureObject('security'));
try {
  o.load({ skip: [...o.programs.keys()].filter((n) => !LSM.includes(n)) });
  makePinDir(LINK_DIR);
  for (const n of LSM) {
    const l = attachLsm(o.program(n));
    l.pin(path.join(LINK_DIR, n));
    l.close();
  }
} finally {
  o.close();
}
console.log(`inert links pinned: ${LSM.join(' ')}`);
