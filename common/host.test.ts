import { describe, expect, it } from 'vitest';
import { configOption, preemptModelFrom, processAlive, procStart, procStartMs, readPidStat, releaseAtLeast } from './host.ts';

// the configs as Debian ships them (trimmed to the lines that matter)
const DEB_6_12 = 'CONFIG_PREEMPT_BUILD=y\nCONFIG_PREEMPT_VOLUNTARY=y\n# CONFIG_PREEMPT_NONE is not set\n# CONFIG_PREEMPT is not set\n# CONFIG_PREEMPT_LAZY is not set\nCONFIG_PREEMPT_DYNAMIC=y\n';
const DEB_7_2 = 'CONFIG_PREEMPT_BUILD=y\nCONFIG_PREEMPT_LAZY=y\n# CONFIG_PREEMPT is not set\nCONFIG_PREEMPT_DYNAMIC=y\n';

describe('preemption model', () => {
  it('takes the current mode from debugfs first', () => {
    expect(preemptModelFrom({ debugfs: 'none voluntary full (lazy)\n', config: DEB_6_12 })).toEqual({ model: 'lazy', preemptible: true, source: 'debugfs sched/preempt' });
    expect(preemptModelFrom({ debugfs: '(none) voluntary full lazy\n' }).model).toBe('none');
  });

  it('falls back to the config default', () => {
    expect(preemptModelFrom({ config: DEB_6_12 }).model).toBe('voluntary');
    expect(preemptModelFrom({ config: DEB_7_2 }).model).toBe('lazy');
    expect(preemptModelFrom({ config: 'CONFIG_PREEMPT=y\n' }).model).toBe('full');
    expect(preemptModelFrom({ config: 'CONFIG_PREEMPT_RT=y\nCONFIG_PREEMPT=y\n' }).model).toBe('rt');
  });

  it('applies preempt= only where the kernel is dynamic and offers that mode', () => {
    expect(preemptModelFrom({ config: DEB_6_12, cmdline: 'console=ttyS0 preempt=full quiet' })).toEqual({ model: 'full', preemptible: true, source: 'preempt=full on the command line' });
    // 7.x has no none: the kernel says "unsupported mode: none" and keeps lazy
    expect(preemptModelFrom({ config: DEB_7_2, cmdline: 'preempt=none' }).model).toBe('lazy');
    expect(preemptModelFrom({ config: 'CONFIG_PREEMPT_VOLUNTARY=y\n', cmdline: 'preempt=full' }).model).toBe('voluntary');
    expect(preemptModelFrom({ config: DEB_6_12, cmdline: 'preempt=bogus' }).model).toBe('voluntary');
  });

  it('says when it cannot tell', () => {
    expect(preemptModelFrom({}).model).toBeUndefined();
    expect(preemptModelFrom({ config: 'CONFIG_HZ=250\n' }).source).toMatch(/unknown/);
    expect(preemptModelFrom({ debugfs: 'garbage' }).model).toBeUndefined();
    expect(preemptModelFrom({ version: '#1 SMP PREEMPT_DYNAMIC Debian 6.12.117-1' }).preemptible).toBeUndefined();
  });

  it('reads a fixed model from uname -v when nothing else tells', () => {
    expect(preemptModelFrom({ version: '#1 SMP Debian 5.10.223-1 (2024-08-10)' })).toEqual({ preemptible: false, source: 'uname -v (none or voluntary)' });
    expect(preemptModelFrom({ version: '#1 SMP PREEMPT Tue Jan 1' })).toMatchObject({ model: 'full', preemptible: true });
    expect(preemptModelFrom({ version: '#1 SMP PREEMPT_RT Tue Jan 1' })).toMatchObject({ model: 'rt', preemptible: true });
  });

  it('says whether kernel code is preemptible', () => {
    expect(preemptModelFrom({ config: DEB_7_2 }).preemptible).toBe(true);
    expect(preemptModelFrom({ config: DEB_6_12 }).preemptible).toBe(false);
  });
});


describe('configOption (what xdp-lb says of the kernel\'s IRQ time accounting)', () => {
  it('reads y, m, "is not set" and absent options, and says null without a config', () => {
    const cfg = 'CONFIG_IRQ_TIME_ACCOUNTING=y\nCONFIG_VETH=m\n# CONFIG_PREEMPT is not set\nCONFIG_IRQ_TIME_ACCOUNTING_X=y\n';
    expect(configOption(cfg, 'IRQ_TIME_ACCOUNTING')).toBe('y');
    expect(configOption(cfg, 'VETH')).toBe('m');
    expect(configOption(cfg, 'PREEMPT')).toBe('n');
    expect(configOption(cfg, 'NET_IPIP')).toBe('n');
    expect(configOption(cfg.replace('CONFIG_IRQ_TIME_ACCOUNTING=y\n', ''), 'IRQ_TIME_ACCOUNTING')).toBe('n');
    expect(configOption(undefined, 'VETH')).toBeNull();
  });
});

describe('releaseAtLeast (tracing: preemptible tracepoint programs; the VM: 9p reads before 5.15)', () => {
  it('compares major.minor of a uname -r release', () => {
    expect(releaseAtLeast('7.2.13+deb14-amd64', [7, 0])).toBe(true);
    expect(releaseAtLeast('7.0.0', [7, 0])).toBe(true);
    expect(releaseAtLeast('6.18.44-fc-v1045', [7, 0])).toBe(false);
    expect(releaseAtLeast('6.12.117+deb13-amd64', [6, 3])).toBe(true);
    expect(releaseAtLeast('6.1.0-50-amd64', [6, 3])).toBe(false);
    expect(releaseAtLeast('10.1', [7, 0])).toBe(true);
  });

  it('counts an unreadable release as new enough (the standby is the safe side)', () => {
    expect(releaseAtLeast('custom', [7, 0])).toBe(true);
  });
});

describe('processAlive (what the tc and svc daemons\' state files are judged by)', () => {
  it('alive: this process; not: a zombie, a reused pid (other start time), a pid that is not one', async () => {
    expect(processAlive(process.pid, procStart(process.pid))).toBe(true);
    expect(processAlive(process.pid)).toBe(true); // an older state file: no start time recorded
    expect(processAlive(process.pid, `${BigInt(procStart(process.pid)!) + 1n}`)).toBe(false);
    for (const pid of [0, -1, 1.5, '123', undefined, 2 ** 30]) expect(processAlive(pid)).toBe(false);
    // a child that exited and is not reaped yet (its parent sleeps): dead, though /proc still lists it
    const { spawn } = await import('node:child_process');
    const py = spawn('python3', ['-c', 'import os, time\npid = os.fork()\nif pid == 0: os._exit(0)\nprint(pid, flush=True)\ntime.sleep(30)']);
    try {
      const zombie = Number(await new Promise<string>((r) => py.stdout.once('data', (b: Buffer) => r(String(b)))));
      for (let i = 0; i < 100 && readPidStat(`/proc/${zombie}/stat`)?.state !== 'Z'; i++) await new Promise((r) => setTimeout(r, 20));
      expect(readPidStat(`/proc/${zombie}/stat`)?.state).toBe('Z');
      expect(processAlive(zombie)).toBe(false);
      expect(processAlive(py.pid)).toBe(true);
    } finally {
      py.kill('SIGKILL');
    }
  });
});

describe('procStartMs (how a reused pid is told from a leftover\'s dead owner)', () => {
  it('gives this process\'s start in wall-clock ms, to within a few clock ticks', () => {
    const expected = Date.now() - process.uptime() * 1000;
    expect(Math.abs(procStartMs(process.pid)! - expected)).toBeLessThan(1000);
    expect(procStartMs(2 ** 22 + 1)).toBeUndefined();
  });
});
