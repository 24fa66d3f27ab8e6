// attachCgroupFirst against the real kernel: a program attached with it runs before one attached
// earlier at the same cgroup, where the kernel orders cgroup programs (BPF_F_BEFORE: 6.12.117 and up in this lab's kernels); a
// plain attach runs in attach order. The observer sees the address after or before the rewrite.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { compile } from '../../bpf/build.ts';
import { cgroup2Root, createCgroup, removeCgroup } from '../../common/cgroup.ts';
import { describeRoot } from '../../lab/testing.ts';
import { BpfObject, attachCgroup, attachCgroupFirst, type Link } from './index.ts';

describeRoot('attachCgroupFirst', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-cgorder-'));
  const cg = path.join(cgroup2Root(), `ebpf-lab-cgorder-${process.pid}`);
  const obj = path.join(tmp, 'cgroup-order.bpf.o');
  beforeAll(async () => {
    await compile(path.join(import.meta.dirname, 'testdata', 'cgroup-order.bpf.c'), obj);
    createCgroup(cg);
  });
  afterAll(() => {
    removeCgroup(cg);
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  /** a UDP connect to 127.0.0.1:9 from a process in the cgroup: the address `observe` was shown */
  const seenBy = async (o: BpfObject) => {
    const r = await execa('sh', ['-c', `echo $$ > ${cg}/cgroup.procs && exec python3 -c "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).connect(('127.0.0.1', 9))"`], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    const v = Number(o.getGlobal('seen'));
    return [v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >>> 24].join('.');
  };

  it('runs before a program attached earlier where the kernel orders cgroup programs; a plain attach runs after it', async (t) => {
    const o = BpfObject.open(obj);
    const links: Link[] = [];
    try {
      o.load();
      links.push(attachCgroup(o.program('observe'), cg));
      const first = attachCgroupFirst(o.program('rewrite'), cg);
      links.push(first.link);
      if (!first.first) return t.skip(`this kernel attaches in order only: ${first.why}`);
      expect(await seenBy(o)).toBe('127.0.0.2');
      first.link.close();
      links.pop();
      // the control: attached plainly after the observer, the rewrite comes too late for it
      links.push(attachCgroup(o.program('rewrite'), cg));
      expect(await seenBy(o)).toBe('127.0.0.1');
    } finally {
      for (const l of links.reverse()) l.close();
      o.close();
    }
  });

  // the wrapping pin holds its link attached: one a process left (killed between pin and unpin)
  // is removed by the next attachCgroupFirst, and its program detached with it
  it('a wrapping pin a dead process left is removed, with its attachment', async () => {
    const o = BpfObject.open(obj);
    const links: Link[] = [];
    const dead = (await execa('sh', ['-c', 'echo $$'])).stdout.trim();
    const left = `/sys/fs/bpf/ebpf-lab-link-${dead}-0`;
    try {
      o.load();
      const l = attachCgroup(o.program('rewrite'), cg);
      l.pin(left);
      l.close(); // only the pin holds it now
      links.push(attachCgroup(o.program('observe'), cg));
      expect(await seenBy(o), 'the left pin keeps its program attached').toBe('127.0.0.2');
      links.push(attachCgroupFirst(o.program('observe'), cg).link);
      expect(fs.existsSync(left)).toBe(false);
      expect(await seenBy(o)).toBe('127.0.0.1');
    } finally {
      fs.rmSync(left, { force: true });
      for (const l of links.reverse()) l.close();
      o.close();
    }
  });
});
