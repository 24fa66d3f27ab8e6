// The receiver-side evidence of the crash check (pure): /proc/net/snmp's Udp NoPorts; the sweep of
// a dead run's crash-test instance (root).
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { expect, it } from 'vitest';
import { STATE_DIR, pinDir, statePath } from '../../controller/tc/shaper.ts';
import { describeRoot } from '../../lab/testing.ts';
import { parseUdpNoPorts, sweepStaleCrashInstances } from './crash.ts';

it('reads Udp NoPorts from /proc/net/snmp, and refuses a file without it', () => {
  const snmp = [
    'Icmp: InMsgs InErrors',
    'Icmp: 3 0',
    'Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors',
    'Udp: 12 7 0 19 0 0 0 0 0',
    'UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors',
    'UdpLite: 0 0 0 0 0 0 0 0 0',
  ].join('\n');
  expect(parseUdpNoPorts(snmp)).toBe(7);
  expect(() => parseUdpNoPorts('Icmp: InMsgs\nIcmp: 3\n')).toThrow(/no Udp NoPorts/);
});

// A run SIGKILLed during its crash check left its instance: the daemon it had restarted still
// running, its pins and state file. The next run's sweep stops that daemon and removes the rest;
// a live run's instance is not touched.
describeRoot('sweepStaleCrashInstances', () => {
  it('stops a dead run\'s crash-test daemon and removes its pins and state; keeps a live run\'s', async () => {
    const deadRun = spawnSync('true').pid!;
    const stale = `tcs-crash-${deadRun}`;
    const live = `tcs-crash-${process.pid}`;
    // the "daemon": a process that ends on SIGTERM, as the shaper does
    const daemon = spawn('sleep', ['60'], { stdio: 'ignore' });
    const ended = new Promise((r) => daemon.once('exit', (_c, sig) => r(sig)));
    fs.mkdirSync(STATE_DIR, { recursive: true });
    const state = (pid: number) => JSON.stringify({ classes: [], rules: [], pid, dev: 'x0', netns: `tcsweep-gone-${deadRun}`, filterOnly: true });
    fs.writeFileSync(statePath(stale), state(daemon.pid!));
    fs.writeFileSync(statePath(live), state(process.pid));
    fs.mkdirSync(pinDir(stale), { recursive: true });
    try {
      const kept = await sweepStaleCrashInstances();
      expect(kept.filter((k) => k.startsWith('tcs-crash-'))).toEqual([]);
      expect(await ended).toBe('SIGTERM');
      expect(fs.existsSync(statePath(stale)) || fs.existsSync(pinDir(stale))).toBe(false);
      expect(fs.existsSync(statePath(live))).toBe(true);
    } finally {
      daemon.kill('SIGKILL');
      for (const f of [statePath(stale), statePath(live)]) fs.rmSync(f, { force: true });
      fs.rmSync(pinDir(stale), { recursive: true, force: true });
    }
  });
});
