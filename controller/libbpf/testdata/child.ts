// Child process for the disposal tests: attach, say "ready", then die the way argv[3] says.
import { BpfObject, attachAuto, attachXdp } from '../index.ts';

const [objPath, ifname, how] = process.argv.slice(2);
const obj = BpfObject.load(objPath!);
attachXdp(obj.program('xdp_fixture'), ifname!, { mode: 'generic' }); // netlink: outlives the process unless undone
attachAuto(obj.program('count_getppid'));
process.stdout.write('ready\n');
if (how === 'throw') setTimeout(() => { throw new Error('boom'); }, 50);
else setInterval(() => {}, 1000); // wait for the signal
