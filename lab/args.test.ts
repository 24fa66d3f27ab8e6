// The argument layer and the probe-table reconciliation: pure logic, no root needed.
import { describe, expect, it } from 'vitest';
import { editDistance, parseArgs, suggest, toArgv, UsageError } from '../common/args.ts';
import { formatProbeTable, reconcile } from './probes.ts';

const spec = {
  usage: 'pnpm lab x',
  options: {
    n: { type: 'int', min: 1, max: 10, default: 3, description: 'n' },
    r: { type: 'number', description: 'r' },
    mode: { type: 'string', choices: ['fast', 'slow'], description: 'm' },
    list: { type: 'list', default: 'a,b', description: 'l' },
    kinds: { type: 'list', choices: ['fail', 'open'], description: 'k' },
    flag: { type: 'boolean', description: 'f' },
  },
  positionals: { names: ['thing'], max: 1 },
} as const;

const err = (argv: string[]) => {
  try {
    parseArgs(argv, spec, () => {});
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    expect((e as UsageError).exitCode).toBe(2);
    return (e as Error).message;
  }
  throw new Error('expected a usage error');
};

describe('parseArgs', () => {
  it('types values and fills defaults', () => {
    const p = parseArgs(['--n=7', '--r', '0.5', '--mode', 'slow', '--flag', 'x', '--', 'after'], spec)!;
    expect(p.values).toEqual({ n: 7, r: 0.5, mode: 'slow', list: ['a', 'b'], flag: true });
    expect(parseArgs(['--kinds', 'open,fail'], spec)!.values.kinds).toEqual(['open', 'fail']);
    expect(p.positionals).toEqual(['x']);
    expect(p.rest).toEqual(['after']);
    expect(toArgv(p.given, ['r'])).toEqual(['--n=7', '--mode=slow', '--flag']);
  });
  it('rejects what is wrong, at the edge', () => {
    expect(err(['--nn', '2'])).toMatch(/unknown option --nn \(did you mean --n\?\)/);
    expect(err(['--n', '0'])).toMatch(/must be ≥ 1/);
    expect(err(['--n', '11'])).toMatch(/must be ≤ 10/);
    expect(err(['--n', '2.5'])).toMatch(/expected a whole number/);
    expect(err(['--r', 'x'])).toMatch(/expected a decimal number/);
    expect(err(['--mode', 'fas'])).toMatch(/expected one of fast, slow/);
    expect(err(['--flag=1'])).toMatch(/takes no value/);
    expect(err(['--kinds', 'fail,opn'])).toMatch(/"opn" is not one of fail, open/);
    expect(err(['a', 'b'])).toMatch(/unexpected argument "b"/);
  });
  // Number() took 0x10 as 16, 1e1 and 10.0 as 10, and " 5" and "+5" as 5: a value the user did not
  // write in the form its help shows, read as something else (0o10 is 8, 010 is 10)
  it('an int is decimal digits and a number decimal: other forms Number() reads are refused, naming the option and the form', () => {
    for (const v of ['0x5', '0X5', '0b101', '0o5', '5e0', '5.0', '5.', ' 5', '5 ', '+5', '', '1_0', '5n', 'Infinity']) {
      expect(err(['--n', v]), JSON.stringify(v)).toBe(`--n ${JSON.stringify(v)}: expected a whole number in decimal digits (e.g. 16, not 0x10, 1e3, +16 or 16.0)`);
    }
    for (const v of ['0x1', '+1', ' 1', '1 ', '.', 'e3', '1e', 'NaN']) {
      expect(err(['--r', v]), JSON.stringify(v)).toBe(`--r ${JSON.stringify(v)}: expected a decimal number (e.g. 0.5 or 1e-3, not 0x10 or +1)`);
    }
    // the fix names the option with a value of its form
    try {
      parseArgs(['--n', '0x5'], spec, () => {});
    } catch (e) {
      expect((e as UsageError).fix).toBe('e.g. --n 3');
    }
    expect(parseArgs(['--n', '007'], spec)!.values.n).toBe(7);
    // digits all the same, only beyond what a number holds exactly
    expect(err(['--n', '99999999999999999999'])).toMatch(/--n "99999999999999999999": too large/);
    for (const [v, n] of [['0.5', 0.5], ['.5', 0.5], ['5.', 5], ['1e-3', 0.001], ['2E3', 2000], ['-1.5', -1.5], ['7', 7]] as const) expect(parseArgs([`--r=${v}`], spec)!.values.r, v).toBe(n);
    // a range below 0 still takes a minus (energy's --pin-cpu -1)
    expect(parseArgs(['--m=-1'], { usage: 'x', options: { m: { type: 'int', min: -1, description: 'm' } } } as const)!.values.m).toBe(-1);
  });

  it('a list option may be repeated and comma-separated: every value is kept, in order', () => {
    const p = parseArgs(['--list', 'x,y', '--list', 'z', '--list=w'], spec)!;
    expect(p.values.list).toEqual(['x', 'y', 'z', 'w']);
    expect(toArgv(p.given)).toEqual(['--list=x,y', '--list=z', '--list=w']);
  });
  it('a list given with no items is refused, naming the option (an empty list once ran a command on nothing)', () => {
    expect(err(['--list', ','])).toMatch(/^--list ",": the list has no items$/);
    expect(err(['--list', ''])).toMatch(/--list "": the list has no items/);
    expect(err(['--kinds', ',,'])).toMatch(/--kinds ",,": the list has no items/);
    expect(err(['--list', 'a', '--list', ','])).toMatch(/--list ",": the list has no items/);
    try {
      parseArgs(['--kinds', ','], spec, () => {});
    } catch (e) {
      expect((e as UsageError).fix).toBe('e.g. --kinds fail,open');
    }
    // a comma at either end is dropped; an empty item between two is a typo ("10,,20" ran 10,20)
    expect(parseArgs(['--list', ',a,b,'], spec)!.values.list).toEqual(['a', 'b']);
    expect(err(['--list', 'a,,b,'])).toMatch(/--list "a,,b,": an empty item in the list/);
  });
  it('an unknown choice names the fix even without a close suggestion', () => {
    try {
      parseArgs(['--mode', 'zzzzzz'], spec, () => {});
      throw new Error('expected a usage error');
    } catch (e) {
      expect((e as UsageError).message).toMatch(/expected one of fast, slow/);
      expect((e as UsageError).fix).toBe('e.g. --mode fast');
    }
    try {
      parseArgs(['--mode', 'slwo'], spec, () => {});
    } catch (e) {
      expect((e as UsageError).fix).toBe('did you mean --mode slow?');
    }
  });
  it('a fix names a value the option takes, a negative number is a value, and an option given twice is a conflict', () => {
    const fixOf = (argv: string[], sp: Parameters<typeof parseArgs>[1] = spec) => {
      try {
        parseArgs(argv, sp, () => {});
      } catch (e) {
        return [(e as UsageError).message, (e as UsageError).fix];
      }
      throw new Error('expected a usage error');
    };
    const ranged = { usage: 'pnpm lab y', options: { frames: { type: 'int', min: 1000, description: 'f' }, cpu: { type: 'int', min: -1, max: 63, default: -1, description: 'c' }, lsm: { type: 'string', choices: ['auto', 'off', 'required'], description: 'l' } } } as const;
    // "must be ≥ 1000" with "e.g. --frames 10" was no fix
    expect(fixOf(['--frames', '5'], ranged)).toEqual(['--frames "5": must be ≥ 1000', 'e.g. --frames 1000']);
    expect(fixOf(['--n', '11'])).toEqual(['--n "11": must be ≤ 10', 'e.g. --n 3']);
    // -1 (the documented default) as a value, spaced or joined
    expect(parseArgs(['--cpu', '-1'], ranged)!.values.cpu).toBe(-1);
    expect(parseArgs(['--cpu=-1'], ranged)!.values.cpu).toBe(-1);
    expect(fixOf(['--cpu', '-2'], ranged)).toEqual(['--cpu "-2": must be ≥ -1', 'e.g. --cpu -1']);
    expect(parseArgs(['--r', '-0.5'], spec)!.values.r).toBe(-0.5);
    // a decimal beyond a double is too large, not "not a decimal number"
    expect(fixOf(['--r', '1e400'])[0]).toBe('--r "1e400": too large');
    // a string option still refuses a value that looks like an option
    expect(fixOf(['--mode', '-x'])).toEqual(['--mode: the value looks like an option', 'write --mode=VALUE']);
    // never the opposite of what was asked
    expect(fixOf(['--lsm', 'on'], ranged)).toEqual(['--lsm "on": expected one of auto, off, required', 'e.g. --lsm auto']);
    expect(suggest('on', ['off', 'auto'])).toBeUndefined();
    expect(suggest('', ['vm', 'lb'])).toBeUndefined();
    expect(suggest(' ', ['vm', 'lb'])).toBeUndefined();
    // twice: refused with both values; a list adds up; a flag twice is a flag
    expect(fixOf(['--n', '3', '--n', '4'])).toEqual(['--n is given 2 times ("3", "4")', 'give --n once']);
    expect(parseArgs(['--list', 'a', '--list', 'b', '--flag', '--flag'], spec)!.values).toMatchObject({ list: ['a', 'b'], flag: true });
  });
  it('--help prints usage and returns null', () => {
    let out = '';
    expect(parseArgs(['--n', 'bad', '--help'], spec, (s) => (out = s))).toBeNull();
    expect(out).toMatch(/^usage: pnpm lab x[\s\S]*--n N[\s\S]*\(default 3\)/);
  });
  it('suggests only close names', () => {
    expect(editDistance('duraton', 'duration')).toBe(1);
    expect(suggest('duraton', ['duration', 'rate'])).toBe('duration');
    expect(suggest('zzzzzz', ['duration', 'rate'])).toBeUndefined();
  });
  it('takes a word cut short for the one name it starts, never for two, nor under three letters', () => {
    expect(suggest('hello', ['energy', 'hello-openat', 'xdp-lb'])).toBe('hello-openat');
    expect(suggest('tra', ['tracing', 'tc-shaping'])).toBe('tracing');
    expect(suggest('socket', ['socket-lb', 'socket-lb-v2'])).toBeUndefined();
    expect(suggest('tc', ['tc-shaping', 'tracing'])).toBeUndefined();
    // a generator is read once
    expect(suggest('hello', (function* () { yield 'hello-openat'; })())).toBe('hello-openat');
  });
});

describe('probe table', () => {
  it('says one thing about BPF LSM and tracing programs', () => {
    const t = {
      'prog:tracing': { ok: false, detail: 'not supported' },
      'prog:lsm': { ok: false, detail: 'not supported' },
      'attach:tp_btf': { ok: true },
      'attach:lsm': { ok: false, detail: 'load: EPERM (1)' },
      'BPF LSM in boot LSMs': { ok: true, detail: 'lsm=lockdown,capability,bpf' },
    };
    reconcile(t);
    expect(t['prog:tracing'].ok).toBe(true);
    expect(t['prog:lsm'].detail).toMatch(/type exists but loading is refused: load: EPERM/);
    expect((t as Record<string, { ok: boolean; detail?: string }>)['BPF LSM usable']).toEqual({ ok: false, detail: expect.stringMatching(/listed in the boot LSMs .* but LSM programs cannot be used: load: EPERM .*likely/) });
    const ok = { 'attach:lsm': { ok: true }, 'BPF LSM in boot LSMs': { ok: true, detail: 'lsm=bpf' } };
    reconcile(ok);
    expect((ok as Record<string, { ok: boolean }>)['BPF LSM usable']!.ok).toBe(true);
  });
  // review, session 57: doctor led with 38 rows in probe order; not root, it said "no" for what it
  // never tried
  it('the table leads with what is missing; what was not probed is neither usable nor missing', () => {
    const t: Record<string, { ok: boolean; detail?: string }> = {
      'kernel BTF': { ok: true },
      'attach:lsm': { ok: false, detail: 'not probed: needs root' },
      'attach:kprobe': { ok: false, detail: 'ENOENT' },
      'BPF LSM in boot LSMs': { ok: true, detail: 'lsm=bpf' },
    };
    reconcile(t);
    expect(t['BPF LSM usable']).toEqual({ ok: false, detail: 'not probed: needs root (bpf is listed in the boot LSMs: lsm=bpf)' });
    const lines = formatProbeTable(t, '6.18.0').split('\n');
    expect(lines[1]).toBe('  2 of 5 usable; not here: attach:kprobe (a scenario that needs one reports "unsupported" with the evidence below); 2 not probed');
  });
});
