// A stuck guest's account (pure): init's task lines, the kernel's blocked-task report, HMP
// registers, System.map symbolizing. Fixtures are trimmed from a real 6.1 guest (TCG) with
// modprobe null_blk stuck on a 120 s completion and a shell busy loop.
import { describe, expect, it } from 'vitest';
import { answeredReport, parseBlocked, parseDiagTasks, parseRegisters, parseSystemMap, summarizeDiag, summarizeVcpus, symbolize, systemMapPath, unansweredReport } from './hang.ts';
import { hangForReport } from './row.ts';

const CONSOLE = `[    5.216507] lab-diag: task 1 S sigsuspend init
[    5.217780] lab-diag: task 134 S do_wait sh
[    5.218825] lab-diag: task 139 D folio_wait_bit_common modprobe
[    5.219967] lab-diag: task 140 R 0 sh
[    5.220809] lab-diag: task 143 S hrtimer_nanosleep sleep
[    5.220900] lab-diag: task 150 S ep_poll node main
[    5.222830] sysrq: Show Blocked State
[    5.223085] task:modprobe        state:D stack:0     pid:139   ppid:134    flags:0x00004002
[    5.223368] Call Trace:
[    5.223658]  <TASK>
[    5.223808]  __schedule+0x34d/0x9e0
[    5.224071]  schedule+0x5a/0xd0
[    5.224103]  io_schedule+0x42/0x70
[    5.224133]  folio_wait_bit_common+0x13d/0x350
[    5.224181]  ? filemap_alloc_folio+0x100/0x100
[    5.224258]  filemap_read_folio+0x87/0xd0
[    5.224366]  read_part_sector+0x32/0xb0
[    5.224682]  null_add_dev+0x38b/0x750 [null_blk]
[    5.225500]  entry_SYSCALL_64_after_hwframe+0x6e/0xd8
[    5.225662] RIP: 0033:0x7f87d6280829
[    5.226253]  </TASK>
[    5.226614] sysrq: Show backtrace of all active CPUs
[    5.226780] NMI backtrace for cpu 0
[    6.651023] lab-diag: end
`;

const REGS = `CPU#0
RAX=000000000001ad40 RBX=0000000000000000 RCX=7ffffffec2aa34ff RDX=4000000000000000
RIP=ffffffff81a4e8cb RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1
CR0=80050033 CR2=00000000005c0d68 CR3=0000000005e1e000 CR4=00750ef0
CPU#1
RAX=0000000000000000 RBX=0000000000000000 RCX=0000000000000000 RDX=0000000000000000
RIP=000055e0a039619c RFL=00000246 [---Z-P-] CPL=3 II=0 A20=1 SMM=0 HLT=0
`;

describe('stuck guest diagnosis (pure)', () => {
  it('reads init\'s task lines: pid, state, wait channel ("0": none), command names with spaces', () => {
    const t = parseDiagTasks(CONSOLE);
    expect(t).toHaveLength(6);
    expect(t[2]).toEqual({ pid: 139, state: 'D', wchan: 'folio_wait_bit_common', comm: 'modprobe' });
    expect(t[3]).toEqual({ pid: 140, state: 'R', wchan: '', comm: 'sh' });
    expect(t[5]!.comm).toBe('node main');
  });

  it('reads the blocked-task report: the task, its pid and its reliable frames (not the "?" ones)', () => {
    const b = parseBlocked(CONSOLE);
    expect(b).toEqual([{ comm: 'modprobe', pid: 139, frames: ['__schedule', 'schedule', 'io_schedule', 'folio_wait_bit_common', 'filemap_read_folio', 'read_part_sector', 'null_add_dev', 'entry_SYSCALL_64_after_hwframe'] }]);
  });

  it('one line: blocked and running tasks first, a blocked task named by the first frame past the scheduler, init\'s own sleeping shells left out', () => {
    const s = summarizeDiag(parseDiagTasks(CONSOLE), parseBlocked(CONSOLE));
    expect(s).toBe('6 user tasks (1 in D, 1 running): modprobe (139) D in folio_wait_bit_common, sh (140) R, sleep (143) S in hrtimer_nanosleep, node main (150) S in ep_poll');
    expect(summarizeDiag(parseDiagTasks(CONSOLE), [], 1)).toBe('6 user tasks (1 in D, 1 running): modprobe (139) D in folio_wait_bit_common, +3 more');
    expect(summarizeDiag([], [])).toMatch(/no task/);
  });

  it('reads HMP registers per vCPU: RIP, privilege level, halted', () => {
    expect(parseRegisters(REGS)).toEqual([
      { cpu: 0, rip: 0xffffffff81a4e8cbn, cpl: 0, halted: true },
      { cpu: 1, rip: 0x55e0a039619cn, cpl: 3, halted: false },
    ]);
    expect(parseRegisters('Error: no CPU')).toEqual([]);
  });

  it('symbolizes with System.map and the runtime _text (KASLR moves everything by one offset)', () => {
    const map = parseSystemMap('ffffffff81000000 T _text\nffffffff81000000 T _stext\nffffffff81a4e8c0 T native_safe_halt\nffffffff81a4e8d0 t default_idle\nffffffff82000000 D some_data\n');
    expect(map.text).toBe(0xffffffff81000000n);
    expect(symbolize(map, 0xffffffff81000000n, 0xffffffff81a4e8cbn)).toBe('native_safe_halt+0xb');
    expect(symbolize(map, 0xffffffff8b000000n, 0xffffffff8ba4e8d4n)).toBe('default_idle+0x4');
    expect(symbolize(map, undefined, 0xffffffff81a4e8cbn)).toBeUndefined(); // no runtime _text: no guess
    expect(symbolize(map, 0xffffffff81000000n, 0x55e0a039619cn)).toBeUndefined(); // user space
    // Debian's System.map is a one-line placeholder: no symbols, no _text
    const placeholder = parseSystemMap('ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n');
    expect(placeholder.text).toBe(0n);
    expect(symbolize(placeholder, 0xffffffff81000000n, 0xffffffff81a4e8cbn)).toBeUndefined();
  });

  it('one line per vCPU over the samples: halted, user, or where in the kernel (distinct places kept)', () => {
    const r = parseRegisters(REGS);
    const spin = [{ cpu: 0, rip: 0xffffffff81100010n, cpl: 0, halted: false }, { cpu: 1, rip: 0x55e0a039619cn, cpl: 3, halted: false }];
    const sym = (rip: bigint) => (rip >= 0xffffffff81000000n ? `_text+0x${(rip - 0xffffffff81000000n).toString(16)}` : undefined);
    expect(summarizeVcpus([r, spin], sym)).toBe('vCPU0: halted (idle) | _text+0x100010; vCPU1: 0x55e0a039619c (user)');
    expect(summarizeVcpus([], sym)).toMatch(/no vCPU registers/);
  });

  it('the reports: init\'s answer as tasks; no answer as vCPUs, symbolized where a real System.map is, else relative to _text, and says which', () => {
    expect(answeredReport(CONSOLE)).toMatchObject({ answered: true, summary: expect.stringMatching(/^guest tasks: 6 user tasks \(1 in D, 1 running\): modprobe \(139\) D in folio_wait_bit_common/) });
    const rounds = [parseRegisters(REGS)];
    const map = 'ffffffff81000000 T _text\nffffffff81a4e8c0 T native_safe_halt\n';
    const base = { answerMs: 20_000, rounds, err: '', ktext: 0xffffffff81000000n, console: '[ 9.0] last words' };
    const real = unansweredReport({ ...base, symbols: { path: '/boot/System.map-x', text: map } });
    expect(real.answered).toBe(false);
    expect(real.summary).toBe('the guest\'s init did not answer a diagnostic request within 20 s (the guest kernel itself stopped making progress); vCPU0: halted (idle); vCPU1: 0x55e0a039619c (user)');
    expect(real.text).toContain('CPU#0 RIP=ffffffff81a4e8cb (native_safe_halt+0xb) CPL=0 HLT=1');
    expect(real.text).not.toMatch(/relative to _text/);
    expect(real.text).toMatch(/--- guest console since the request ---\n\[ 9\.0\] last words$/);
    const none = unansweredReport({ ...base, symbols: { note: 'no System.map for this kernel, and its kallsyms could not be read (not read within 30 s)' } });
    expect(none.text).toContain('CPU#0 RIP=ffffffff81a4e8cb (_text+0xa4e8cb)');
    expect(none.text).toContain('no System.map for this kernel, and its kallsyms could not be read (not read within 30 s): kernel addresses are given relative to _text');
    const empty = unansweredReport({ ...base, symbols: { path: '/x.kallsyms', text: 'ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n' } });
    expect(empty.text).toContain('/x.kallsyms holds no symbols: kernel addresses are given relative to _text');
    const noKtext = unansweredReport({ ...base, ktext: undefined });
    expect(noKtext.text).toContain('CPU#0 RIP=ffffffff81a4e8cb CPL=0');
    expect(noKtext.text).toContain('(KTEXT): addresses are raw');
    expect(unansweredReport({ ...base, rounds: [], err: 'QMP did not answer within 5000 ms' }).summary).toMatch(/; vCPU registers unreadable \(QMP did not answer within 5000 ms\)$/);
  });

  it('finds System.map beside the kernel config only when it exists', () => {
    expect(systemMapPath({ release: 'x' })).toBeUndefined();
    expect(systemMapPath({ config: '/nonexistent/config-x', release: 'x' })).toBeUndefined();
  });
});

describe('hangForReport', () => {
  it('keeps an account up to the cap whole, and cuts a longer one there, saying where the rest is', () => {
    expect(hangForReport('summary\n\ntasks', 64)).toBe('summary\n\ntasks');
    const long = 'x'.repeat(100);
    expect(hangForReport(long, 64)).toBe(`${'x'.repeat(64)}\n… (36 more characters in vm-hang.txt)`);
  });
});
