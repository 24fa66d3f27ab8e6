// makePinDir on a machine without a bpffs at /sys/fs/bpf (containers, chroots, minimal hosts):
// each case runs in a mount namespace of its own with the bpffs unmounted, so the host's pins are
// not touched. A tc shaper start once spun forever there (Node's recursive mkdir on sysfs).
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { describeRoot, inOwnMountNs } from '../../lab/testing.ts';

const INDEX = path.join(import.meta.dirname, 'index.ts');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-pindir-'));
const fsType = () => execFileSync('stat', ['-f', '-c', '%T', '/sys/fs/bpf'], { encoding: 'utf8' }).trim();
const hostBefore = fsType();
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** run `code` (which may call makePinDir) in a private mount namespace whose /sys/fs/bpf has no bpffs */
function inFreshMountNs(code: string): { status: number | null; out: string } {
  const script = path.join(dir, `case-${Math.random().toString(36).slice(2)}.mts`);
  fs.writeFileSync(script, `import fs from 'node:fs';\nimport { makePinDir } from ${JSON.stringify(INDEX)};\nconst magic = (p: string) => fs.statfsSync(p).type.toString(16);\n${code}\n`);
  const [cmd, args] = inOwnMountNs('while umount /sys/fs/bpf 2>/dev/null; do :; done; echo "before: $(stat -f -c %T /sys/fs/bpf)"', [process.execPath, '--import', 'tsx', script]);
  const r = spawnSync(cmd, args, { cwd: path.join(import.meta.dirname, '../..'), encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describeRoot('makePinDir without a bpffs', () => {
  it('mounts the bpffs at /sys/fs/bpf (as bpftool does) and creates the pin dir there', () => {
    const r = inFreshMountNs(`makePinDir('/sys/fs/bpf/ebpf-lab/pindir-test/links');\nconsole.log('after:', magic('/sys/fs/bpf'), fs.existsSync('/sys/fs/bpf/ebpf-lab/pindir-test/links'));`);
    expect(r.out).toMatch(/^before: sysfs$/m); // the case's subject: no bpffs there
    expect(r.status, r.out).toBe(0);
    expect(r.out).toMatch(/^after: cafe4a11 true$/m);
  }, 90_000);

  it('a pin dir off any bpffs is one clear error, not a hang', () => {
    const off = path.join(dir, 'not-bpffs', 'pins');
    const t0 = Date.now();
    const r = inFreshMountNs(`try { makePinDir(${JSON.stringify(off)}); console.log('created'); } catch (e) { console.log('error:', (e as Error).message, '| fix:', (e as { fix?: string }).fix); }`);
    expect(Date.now() - t0).toBeLessThan(60_000);
    expect(r.status, r.out).toBe(0);
    expect(r.out).toContain(`error: ${off} is not on a bpffs: pinned maps and links would not outlive this process | fix: use a directory under /sys/fs/bpf`);
    expect(fs.existsSync(off)).toBe(false);
  }, 90_000);

  it('under ip netns exec (a fresh /sys in a mount namespace of its own) it mounts nothing: the pins would vanish with the process; the fix names nsenter', (ctx) => {
    const ns = `ebpf-lab-pindir-${process.pid}`;
    execFileSync('ip', ['netns', 'add', ns]);
    try {
      // ip netns exec makes / a slave mount first, which fails where / is not a mount point (a chroot)
      const probe = spawnSync('ip', ['netns', 'exec', ns, 'true'], { encoding: 'utf8' });
      if (probe.status !== 0) ctx.skip(`ip netns exec cannot run here: ${probe.stderr.trim().split('\n')[0]}`);
      const script = path.join(dir, 'netns-case.mts');
      fs.writeFileSync(script, `import { makePinDir } from ${JSON.stringify(INDEX)};\ntry { makePinDir('/sys/fs/bpf/ebpf-lab/pindir-ns'); console.log('created'); } catch (e) { console.log('error:', (e as Error).message, '| fix:', (e as { fix?: string }).fix); }\n`);
      const r = spawnSync('ip', ['netns', 'exec', ns, 'sh', '-c', 'echo "before: $(stat -f -c %T /sys/fs/bpf)"; exec "$@"', 'sh', process.execPath, '--import', 'tsx', script], { cwd: path.join(import.meta.dirname, '../..'), encoding: 'utf8', timeout: 60_000 });
      const out = `${r.stdout}${r.stderr}`;
      expect(out).toMatch(/^before: sysfs$/m);
      expect(out).toContain(`error: /sys/fs/bpf has no bpffs here (network namespace ${ns}; ip netns exec mounts a fresh /sys): pins under /sys/fs/bpf/ebpf-lab/pindir-ns would vanish with this process | fix: run the command with "nsenter --net=/run/netns/${ns} -- …"`);
    } finally {
      execFileSync('ip', ['netns', 'del', ns]);
    }
  }, 90_000);

  it('the host\'s own /sys/fs/bpf is left as it was by these cases', () => {
    // the cases ran in their own mount namespaces: whatever the host had (a bpffs or none) it still has
    expect(fsType()).toBe(hostBefore);
  });
});
