// Run in a guest by nolsm-vm.test.ts (node --import tsx): an unpinned controller, one policy, and
// the attack ATTACK (python, in the environment) from the selected cgroup; prints the mechanisms
// the controller chose and the attack's lines.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { SecurityController } from '../controller.ts';
import { parsePolicies } from '../policy.ts';

const c = await SecurityController.start();
try {
  console.log(`exec ${c.mechanisms.exec}`);
  console.log(`lsm ${c.mechanisms.lsmEvidence}`);
  console.log(`routes ${c.mechanisms.sourceRouting.join(' | ')}`);
  fs.mkdirSync('/sys/fs/cgroup/nolsm-test', { recursive: true });
  c.store.apply(parsePolicies('policies:\n  - name: t\n    select: { cgroup: /nolsm-test }\n    exec: { deny: [shells] }\n    egress: { deny: [{ to: 10.0.0.0/8 }] }\n', 'p.yaml'));
  const r = spawnSync('python3', ['-c', process.env.ATTACK!], { encoding: 'utf8' });
  process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  for (const e of c.drainEvents()) console.log(`event ${e.kind} ${e.action} ${e.option ?? e.binary ?? ''} ${e.cgroup}`);
} finally {
  c.close();
}
