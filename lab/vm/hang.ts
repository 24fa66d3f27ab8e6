// What a guest was doing when the host gave up on it. A run that stops making progress in a
// guest (CI once saw one sit 5 min right after a workload started, then not answer the stop) used
// to leave nothing but "timed out": the guest was killed with the only evidence in it. Before the
// host kills a stuck guest it now asks:
//   1. the guest's init (lab/vm/init.sh, DIAG on the control port): every user task's state and
//      wait channel, then the kernel's own blocked-task report and every CPU's backtrace
//      (sysrq w, l), all on the serial console, which the host reads back from the console log;
//   2. when init does not answer either — the guest kernel itself stopped — QEMU (QMP, HMP
//      `info registers -a`): where each vCPU is, sampled a few times, symbolized with the
//      kernel's text symbols (symbols.ts: its own kallsyms, read out of the image, where Debian's
//      System.map is a placeholder) and the _text the guest reported at boot (KTEXT; KASLR moves
//      it under vng).
// This file holds the parsing and symbolizing (pure, tested without a VM) and the QMP client.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export interface HangReport {
  /** init answered DIAG (the guest kernel ran); false: the vCPU registers are all there is */
  answered: boolean;
  /** one line for an error message */
  summary: string;
  /** the full evidence, for vm-hang.txt */
  text: string;
}

export interface DiagTask {
  pid: number;
  /** R, S, D, T, Z … (/proc/<pid>/status State:) */
  state: string;
  wchan: string;
  comm: string;
}

/** the lines init.sh wrote for DIAG: "lab-diag: task <pid> <state> <wchan> <comm>" (the kernel's timestamp prefix allowed) */
export function parseDiagTasks(consoleText: string): DiagTask[] {
  const out: DiagTask[] = [];
  for (const m of consoleText.matchAll(/lab-diag: task (\d+) (\S+) (\S+) ?(.*)$/gm)) {
    out.push({ pid: Number(m[1]), state: m[2]!, wchan: m[3] === '0' ? '' : m[3]!, comm: m[4]!.trim() });
  }
  return out;
}

/** pids the kernel's blocked-task report (sysrq w) named: "task:python3 state:D stack:0 pid:412 …" */
export function parseBlocked(consoleText: string): { comm: string; pid: number; frames: string[] }[] {
  const lines = consoleText.split('\n');
  const out: { comm: string; pid: number; frames: string[] }[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /task:(.+?)\s+state:D\s.*?pid:\s*(\d+)/.exec(lines[i]!);
    if (!m) continue;
    const frames: string[] = [];
    // the stack follows: " __schedule+0x…/0x…", " ? foo+…" (unreliable frames), up to a blank or the next task
    for (let j = i + 1; j < lines.length && frames.length < 12; j++) {
      const l = lines[j]!.replace(/^\[\s*[\d.]+\]\s*/, '');
      if (/task:|lab-diag:|^sysrq:/.test(l)) break;
      const f = /^\s*(\?\s*)?([A-Za-z_][\w.]*)\+0x[0-9a-f]+\/0x[0-9a-f]+/.exec(l);
      if (f && !f[1]) frames.push(f[2]!);
    }
    out.push({ comm: m[1]!, pid: Number(m[2]), frames });
  }
  return out;
}

/** the first frame that says what a blocked task waits for, past the scheduler's own */
function waitFrame(frames: string[]): string | undefined {
  return frames.find((f) => !/^(__schedule|schedule|schedule_timeout|schedule_preempt_disabled|io_schedule|io_schedule_timeout|__switch_to|__switch_to_asm|context_switch|rwsem_down_\w+|__mutex_lock\w*|mutex_lock\w*|bit_wait\w*|__wait_on_bit\w*|out_of_line_wait_on_bit\w*|wait_for_completion\w*|__wait_for_common|do_wait_for_common)$/.test(f)) ?? frames[0];
}

/** One line: what the guest's tasks were doing (not-sleeping tasks first, then the sleepers' wait channels) */
export function summarizeDiag(tasks: DiagTask[], blocked: ReturnType<typeof parseBlocked>, limit = 8): string {
  if (!tasks.length && !blocked.length) return 'the guest answered but reported no task';
  const own = new Set(['init', 'sh', 'busybox']); // the guest's init and its control shells
  const shown = tasks.filter((t) => !own.has(t.comm) || t.state !== 'S');
  const rank = (t: DiagTask) => (t.state === 'D' ? 0 : t.state === 'R' ? 1 : t.state === 'S' ? 3 : 2);
  shown.sort((a, b) => rank(a) - rank(b) || a.pid - b.pid);
  const desc = (t: DiagTask) => {
    const b = blocked.find((x) => x.pid === t.pid);
    const where = b ? waitFrame(b.frames) : t.wchan;
    return `${t.comm} (${t.pid}) ${t.state}${where ? ` in ${where}` : ''}`;
  };
  const parts = shown.slice(0, limit).map(desc);
  const more = shown.length > limit ? `, +${shown.length - limit} more` : '';
  const d = tasks.filter((t) => t.state === 'D').length;
  const r = tasks.filter((t) => t.state === 'R').length;
  return `${tasks.length} user tasks (${d} in D, ${r} running): ${parts.join(', ')}${more}`;
}

export interface VcpuSample {
  cpu: number;
  rip: bigint;
  cpl: number;
  halted: boolean;
}

/** HMP `info registers -a`: "CPU#0" then "RIP=ffffffff81… RFL=… CPL=0 … HLT=1" per vCPU */
export function parseRegisters(text: string): VcpuSample[] {
  const out: VcpuSample[] = [];
  for (const sec of text.split(/^(?=CPU#\d+)/m)) {
    const cpu = /^CPU#(\d+)/.exec(sec);
    const rip = /RIP=([0-9a-f]+)/.exec(sec);
    if (!cpu || !rip) continue;
    out.push({ cpu: Number(cpu[1]), rip: BigInt(`0x${rip[1]}`), cpl: Number(/CPL=(\d)/.exec(sec)?.[1] ?? -1), halted: /HLT=1/.test(sec) });
  }
  return out;
}

export interface SymbolMap {
  addrs: bigint[];
  names: string[];
  /** _text's link-time address */
  text: bigint;
}

/** System.map text symbols, sorted by address */
export function parseSystemMap(text: string): SymbolMap {
  const rows: [bigint, string][] = [];
  let t = 0n;
  for (const l of text.split('\n')) {
    const m = /^([0-9a-f]{16}) ([tTwW]) (\S+)$/.exec(l);
    if (!m) continue;
    const a = BigInt(`0x${m[1]}`);
    if (m[3] === '_text') t = a;
    rows.push([a, m[3]!]);
  }
  rows.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
  return { addrs: rows.map((r) => r[0]), names: rows.map((r) => r[1]), text: t };
}

/** "func+0x1a" for a runtime address, given the runtime _text (KASLR); undefined outside the kernel's text */
export function symbolize(map: SymbolMap, runtimeText: bigint | undefined, rip: bigint): string | undefined {
  if (runtimeText === undefined || !map.addrs.length || !map.text) return undefined;
  const a = rip - (runtimeText - map.text);
  let lo = 0;
  let hi = map.addrs.length - 1;
  if (a < map.addrs[0]! || a > map.addrs[hi]! + 0x100000n) return undefined;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (map.addrs[mid]! <= a) lo = mid;
    else hi = mid - 1;
  }
  return `${map.names[lo]}+0x${(a - map.addrs[lo]!).toString(16)}`;
}

/** the kernel's System.map beside its config (Debian: /boot/System.map-<release>, or the modules dir's System.map on 7.x) */
export function systemMapPath(k: { config?: string; release: string }): string | undefined {
  if (!k.config) return undefined;
  const dir = path.dirname(k.config);
  return [path.join(dir, `System.map-${k.release}`), path.join(dir, 'System.map')].find((p) => fs.existsSync(p));
}

/** One line per sample round: where each vCPU was */
export function summarizeVcpus(rounds: VcpuSample[][], sym: (rip: bigint) => string | undefined): string {
  if (!rounds.length || !rounds[0]!.length) return 'no vCPU registers could be read';
  const byCpu = new Map<number, string[]>();
  for (const r of rounds) {
    for (const s of r) {
      const where = s.halted ? 'halted (idle)' : `${sym(s.rip) ?? `0x${s.rip.toString(16)}`}${s.cpl === 3 ? ' (user)' : ''}`;
      const l = byCpu.get(s.cpu) ?? [];
      if (!l.includes(where)) l.push(where);
      byCpu.set(s.cpu, l);
    }
  }
  return [...byCpu].map(([cpu, w]) => `vCPU${cpu}: ${w.slice(0, 4).join(' | ')}`).join('; ');
}

/** the report when init answered DIAG: `text` is the console from the request on */
export function answeredReport(text: string): HangReport {
  return { answered: true, summary: `guest tasks: ${summarizeDiag(parseDiagTasks(text), parseBlocked(text))}`, text };
}

/**
 * The report when init did not answer within `answerMs`: the vCPU samples, symbolized with the
 * kernel's text symbols (symbols.ts: a System.map, or the kallsyms read out of the image) where
 * there are some, else relative to the guest's _text.
 */
export function unansweredReport(o: { answerMs: number; rounds: VcpuSample[][]; err: string; ktext?: bigint; symbols?: { path?: string; text?: string; note?: string }; console?: string; why?: string }): HangReport {
  const kt = o.ktext;
  const rel = (rip: bigint) => (kt !== undefined && rip >= kt && rip < kt + 0x4000000n ? `_text+0x${(rip - kt).toString(16)}` : undefined);
  let sym = rel;
  let mapNote = o.symbols?.note ?? (o.symbols?.text === undefined ? 'no symbols for this kernel' : '');
  if (o.symbols?.text !== undefined) {
    const map = parseSystemMap(o.symbols.text);
    if (!map.text) mapNote = `${o.symbols.path ?? 'the symbol table'} holds no symbols`;
    else if (kt !== undefined) sym = (rip) => symbolize(map, kt, rip) ?? rel(rip);
  }
  const where = o.rounds.length ? summarizeVcpus(o.rounds, sym) : `vCPU registers unreadable (${o.err || 'QEMU exited'})`;
  const why = o.why ?? `the guest's init did not answer a diagnostic request within ${(o.answerMs / 1000).toFixed(0)} s (the guest kernel itself stopped making progress)`;
  const samples = o.rounds.map((r, i) => `sample ${i + 1}: ${r.map((s) => `CPU#${s.cpu} RIP=${s.rip.toString(16)}${sym(s.rip) ? ` (${sym(s.rip)})` : ''} CPL=${s.cpl} HLT=${s.halted ? 1 : 0}`).join('  ')}`);
  const notes = [
    ...(mapNote ? [`${mapNote}: kernel addresses are given relative to _text`] : []),
    ...(kt === undefined ? ['the guest never reported its kernel text address (KTEXT): addresses are raw'] : []),
  ];
  const console = o.console === undefined ? [] : ['--- guest console since the request ---', o.console];
  return { answered: false, summary: `${why}; ${where}`, text: [why, where, ...samples, ...notes, ...console].join('\n') };
}

/** QEMU's view alone: three samples of every vCPU's registers through `hmp`, 300 ms apart */
export async function sampleVcpus(hmp: (command: string) => Promise<string>, alive: () => boolean = () => true): Promise<{ rounds: VcpuSample[][]; err: string }> {
  const rounds: VcpuSample[][] = [];
  let err = '';
  for (let i = 0; i < 3 && alive(); i++) {
    try {
      rounds.push(parseRegisters(await hmp('info registers -a')));
    } catch (e) {
      err = (e as Error).message;
      break;
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  return { rounds, err };
}

/** One HMP command through QEMU's QMP socket (greeting, capabilities, human-monitor-command). */
export function qmpHmp(sock: string, command: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect(sock);
    let buf = '';
    let step = 0;
    const t = setTimeout(() => (c.destroy(), reject(new Error(`QMP did not answer within ${timeoutMs} ms`))), timeoutMs);
    const done = (e: Error | null, v?: string) => {
      clearTimeout(t);
      c.destroy();
      if (e) reject(e);
      else resolve(v!);
    };
    c.on('error', (e) => done(e));
    c.on('data', (d) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (!line) continue;
        let msg: { QMP?: unknown; return?: unknown; error?: { desc?: string }; event?: string };
        try {
          msg = JSON.parse(line);
        } catch {
          continue;
        }
        if (msg.event) continue;
        if (msg.error) return done(new Error(`QMP: ${msg.error.desc ?? 'error'}`));
        if (step === 0 && msg.QMP) {
          step = 1;
          c.write(`${JSON.stringify({ execute: 'qmp_capabilities' })}\n`);
        } else if (step === 1 && 'return' in msg) {
          step = 2;
          c.write(`${JSON.stringify({ execute: 'human-monitor-command', arguments: { 'command-line': command } })}\n`);
        } else if (step === 2 && 'return' in msg) {
          return done(null, String(msg.return));
        }
      }
    });
  });
}
