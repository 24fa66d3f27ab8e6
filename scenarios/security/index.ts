// security: kernel-enforced exec and egress policies for one workload (a cgroup running as nobody),
// attacked by scenarios/security/attacks/*, with a real PostgreSQL as the positive control.
//   run:   attack × kernel table (each row with the event that proves it), positive controls,
//          processes outside the cgroup, log-only mode, a deny-list-only pass that shows what the
//          allowlist is for, and how long a policy update takes to reach the hooks.
//   bench: the above plus fork+exec, connect and send (UDP sendto/send, TCP send) micro-benchmarks:
//          no programs / programs loaded with a non-matching policy / matching, side by side in one run.
import fs from 'node:fs';
import path from 'node:path';
import type { Scenario, ScenarioContext } from '../../lab/scenario.ts';
import { enforcementGaps, hasRouteGuard, type SecurityEvent } from '../../controller/security/controller.ts';
import { ATTACKS, CONTROLS, mechanismShort, missingHook, proof, refusedByKernel, runAttack, type Attack, type AttackResult } from './suite.ts';
import { setupLab, workloadPolicy, type Lab } from './setup.ts';
import { PYTHON, preparePostgresTemplate } from './workload.ts';
import { parsePolicies } from '../../controller/security/policy.ts';
import { measureUpdateLatency } from './latency.ts';
import { startHeld } from './held.ts';
import { describeHeld } from '../../controller/security/existing.ts';
import { OPS, parseOps, runBench } from './bench.ts';
import { headlineFromRounds } from '../../lab/rounds.ts';

/** the hard-link row's deny-list-only expectation depends on the file system (see Lab.hardlinkSameInode) */
function hardlinkAttack(lab: Lab): Attack {
  const a = ATTACKS.find((x) => x.name === 'exec-hardlink')!;
  return lab.hardlinkSameInode === false
    ? { ...a, expectDenyOnly: 'allowed', note: 'overlayfs: link() copied the lower-layer file up, the link has its own inode (the kernel oracle says so), i.e. it is a copy: only the allowlist stops it' }
    : a;
}

const scenario: Scenario = {
  name: 'security',
  description: 'exec and egress policies enforced by BPF (LSM or tracepoint+SIGKILL; cgroup sock hooks), attacked by a suite of bypass attempts',
  tools: ['security'],
  // initdb takes 25-65 s under TCG: the host makes the cluster template a guest copies
  vm: { prepare: (log) => preparePostgresTemplate(log) },
  options: {
    lsm: { type: 'string', choices: ['auto', 'off'], default: 'auto', description: 'off: enforce exec without BPF LSM (the tracepoint + SIGKILL fallback)' },
    repeat: { only: 'bench', type: 'int', min: 2, max: 1000, default: 5, valueName: 'N', description: 'bench: interleaved rounds (none / non-matching / matching once each per round; the bootstrap interval needs ≥ 2, 5+ to be decisive)' },
    rounds: { only: 'bench', type: 'int', min: 2, hidden: true, valueName: 'N', description: 'old name of --repeat' },
    'exec-n': { only: 'bench', type: 'int', min: 1, default: 300, valueName: 'N', description: 'bench: fork+exec per round' },
    'connect-n': { only: 'bench', type: 'int', min: 1, default: 3000, valueName: 'N', description: 'bench: connects per round' },
    'send-n': { only: 'bench', type: 'int', min: 1, default: 20000, valueName: 'N', description: 'bench: sends per round, of each kind (UDP sendto, UDP send, TCP send); getppid 25 times as many' },
    ops: {
      type: 'string', default: OPS.join(','), valueName: 'OP,…', description: `bench: the operations measured (${OPS.join(', ')})`,
      check: (v) => (parseOps(v) ? undefined : { message: `expected a comma-separated list of ${OPS.join(', ')}`, fix: 'e.g. --ops sendto,send,tcp-send' }),
    },
  },
  async run(ctx) {
    if (process.getuid?.() !== 0) {
      ctx.unsupported('security scenario', 'root', 'loading BPF programs and creating cgroups needs root');
      return;
    }
    const kernel = ctx.kernel.release;
    ctx.progress.step('setting up cgroups, controller, listeners, PostgreSQL');
    const lab = await setupLab(ctx.defer, { postgres: true, log: (s) => ctx.progress.info(s), lsm: ctx.options.lsm === 'off' ? 'off' : 'auto' });
    const m = lab.controller.mechanisms;
    const allEvents: SecurityEvent[] = [];
    // an attack ends a stopped run (the controls launch several before their first check, and
    // changed the policy of a controller being torn down)
    const keep = (r: AttackResult) => {
      ctx.signal.throwIfAborted();
      allEvents.push(...r.events);
      return r;
    };

    ctx.section(
      `Enforcement on ${kernel}`,
      { kind: 'kv', items: {
        exec: m.exec === 'lsm' ? 'BPF LSM: lsm/bprm_check_security returns -EPERM' : m.exec === 'tp-kill' ? 'fallback: tp_btf/sched_process_exec + bpf_send_signal(SIGKILL) (the task dies before returning to user space)' : 'none',
        'BPF LSM probe': m.lsmEvidence,
        egress: m.egress.join(', ') || 'none',
        'raw / packet sockets': m.rawSockets.length ? `${m.rawSockets.join(', ')}${m.rawSockets.includes('lsm/socket_create') || m.rawSockets.some((x) => x.includes('io_uring')) ? '' : ' (AF_PACKET and the other non-inet families via io_uring IORING_OP_SOCKET are outside the tracepoint fallback)'}` : 'not enforced',
        'other processes (ptrace attach mode)': m.ptrace.length ? m.ptrace.join(', ') + (m.ptrace.includes('lsm/ptrace_access_check') ? '' : ' (the tracepoint fallbacks kill at the syscall\'s return or the io_uring completion)') : 'not enforced',
        '32-bit syscalls (int 0x80)': m.compat === 'none needed' ? 'no syscall tracepoint fallback to bypass (BPF LSM sees both ABIs)' : m.compat || `not judged on ${kernel}: the syscall tracepoint fallbacks do not see them (${m.unsupported.filter((u) => u.hook === 'tp_btf/sys_exit').map((u) => u.evidence).join('; ') || 'hook not attached'})`,
        '/proc/<pid>/mem opened through io_uring': m.ptraceIoUring || `unsupported on ${kernel}: ${m.unsupported.filter((u) => /io_uring_complete|io_uring opens/.test(u.hook)).map((u) => u.evidence).join('; ') || 'no ptrace hook'}`,
        'source routing (IPv6 routing headers, IPv4 LSRR/SSRR)': m.sourceRouting.length ? `refused by ${m.sourceRouting.join(', ')}${m.sourceRouting.includes('lsm/socket_sendmsg') ? '' : hasRouteGuard(m) ? ' (no BPF LSM: a route given per message, in a control message, is dropped with its packet, by the sending socket\'s cgroup or else its sender\'s policy)' : ' (a route given per message, in a control message, is not: no BPF LSM)'}` : `unsupported: cgroup/setsockopt and lsm/socket_sendmsg on ${kernel}`,
        'lsm/socket_connect': m.lsmConnect ? 'attached (runs before the cgroup hook for connect)' : `unsupported: lsm/socket_connect on ${kernel} (${m.lsmEvidence}); connect is enforced by the cgroup hooks alone`,
        'exec via BPF LSM': m.exec === 'lsm' ? 'yes' : `unsupported: lsm/bprm_check_security on ${kernel}; the tracepoint fallback enforces exec`,
        'not enforced on this kernel (pnpm lab policy daemon --require-all refuses to start)': enforcementGaps(m).map((g) => `${g.what} (${g.evidence})`).join('; ') || 'nothing: every rule kind is enforced',
        'PostgreSQL': lab.pg ? `${path.basename(path.dirname(lab.pg.bin))} on 127.0.0.1:${lab.pg.port}${lab.pg.port !== 5432 ? ' (5432 was taken)' : ''}` : 'not started',
        workload: `cgroup ${lab.workloadCg}, uid 65534 (nobody)`,
      } },
    );
    ctx.metric('mechanisms', m);
    for (const u of m.unsupported) ctx.unsupported(`hook ${u.hook}`, u.hook, `unsupported: ${u.hook} on ${kernel}: ${u.evidence}`);

    // connections the workload holds from before its policy: judged by no hook (held.ts)
    const held = await startHeld(lab.cgroupDir, lab.listeners.udpPort, lab.env);
    ctx.defer('stop the connection holder', () => held.stop());
    ctx.progress.step('applying the workload policy');
    const applied = lab.controller.store.apply(workloadPolicy(lab));
    const ids = lab.controller.store.list().flatMap((p) => p.identities);
    ctx.section(
      'Policy',
      { kind: 'pre', caption: 'rules in force (ids appear in events)', text: applied.flatMap((a) => a.rules.map((r) => `${r.id}  ${r.name}`)).join('\n') },
      { kind: 'table', caption: `binaries as the kernel identifies them (${m.oracle ? 'asked of the exec tracepoint: stat(2) can differ, e.g. on overlayfs' : 'stat(2): no exec tracepoint to ask'})`, columns: ['binary', 'dev:ino', 'identified by'], rows: ids.map((i) => [i.named ? `${i.named} → ${i.path}` : i.path, `${BigInt(i.dev) >> 20n}:${BigInt(i.dev) & 0xfffffn}:${i.ino}`, i.how + (i.why ? ` (${i.why})` : '')]) },
    );
    ctx.progress.step('connections held from before the policy');
    const h = await held.afterApply(lab.controller);
    ctx.section(
      'Connections held from before the policy',
      { kind: 'kv', items: {
        'what': 'the workload connected TCP and UDP to destinations its policy denies, before the policy was applied; egress is judged at connect and at sendmsg with an address, so these sockets never meet a hook',
        'sends after the apply': `${h.before} (the TCP listener got ${h.tcpBytesBefore} bytes)`,
        'found by policy connections': h.found.map((c) => describeHeld(c)).join('; ') || 'none',
        'closed (socket destroy)': h.closeErrors.length ? `not all: ${h.closeErrors.join('; ')}` : `${h.found.length} closed`,
        'sends after closing': `${h.after} (errno 103 ECONNABORTED, 89 EDESTADDRREQ: no longer connected)`,
      } },
    );
    ctx.check('connections held from before the policy are found as the hooks judge them (TCP and connected UDP)', h.found.length === 2 && h.found.some((c) => c.proto === 'tcp') && h.found.some((c) => c.proto === 'udp'), h.found.map((c) => describeHeld(c)).join('; ') || `none found; the holder said ${h.lines.join(' | ')}`);
    ctx.check('closing them ends the traffic: the workload\'s next sends fail', !h.closeErrors.length && /^tcp=\d+ udp=\d+$/.test(h.after), `${h.after}${h.closeErrors.length ? `; ${h.closeErrors.join('; ')}` : ''}`);
    await held.stop();

    ctx.check('every binary of the policy identified by the kernel', !m.oracle || ids.every((i) => i.how === 'kernel'), ids.filter((i) => i.how !== 'kernel').map((i) => `${i.path}: ${i.why}`).join('; ') || `${ids.length} binaries`);

    // --------------------------------------------------------------- attacks
    const rows: AttackResult[] = [];
    const outsideRuns: AttackResult[] = []; // controls of the attacks the kernel may refuse by itself
    for (const [i, a] of ATTACKS.entries()) {
      ctx.progress.step(`attack ${i + 1}/${ATTACKS.length}: ${a.name}`);
      const { refused, control } = await refusedByKernel(a, lab);
      if (control) outsideRuns.push(keep(control));
      if (refused) {
        // nothing for the policy to stop here: the workload is still attacked, and must not get through
        const r = keep(await runAttack(a, lab));
        const blocked = r.outcome !== 'allowed';
        rows.push({ ...r, outcome: blocked ? 'blocked' : 'allowed', ok: blocked, byKernel: true, unsupported: false, detail: `${blocked ? `blocked by the kernel${r.events.length ? ` (and by the policy first, for ${r.events.length} call(s): ${mechanismShort(r.events)})` : ', not the policy'}` : 'GOT THROUGH inside, though the kernel refused it outside'}: ${r.detail.replace(/^unsupported: /, '')}; outside every policy: ${refused}` });
        ctx.check(`attack ${a.name}: ${a.expect}`, blocked, rows.at(-1)!.detail);
        continue;
      }
      const missing = missingHook(a, m);
      if (missing) {
        ctx.unsupported(`attack ${a.name}`, missing, `unsupported: ${missing} on ${kernel}`);
        rows.push({ name: a.name, class: a.class, what: a.what, expect: a.expect, outcome: 'error', ok: false, detail: `unsupported: ${missing} on ${kernel}`, events: [], ms: 0 });
        continue;
      }
      if (a.name === 'exec-hardlink' && !lab.hardlink) {
        ctx.unsupported(`attack ${a.name}`, 'hard link', 'cannot hard-link /usr/bin/dash into the scratch dir (different file system)');
        continue;
      }
      const r = keep(await runAttack(a, lab));
      rows.push(r);
      if (r.unsupported) {
        ctx.unsupported(`attack ${a.name}`, a.name, `${r.detail} on ${kernel}`);
        continue;
      }
      ctx.check(`attack ${a.name}: ${a.expect}`, r.ok, `${r.outcome}: ${r.detail}${r.events.length ? ` | ${proof(r.events)}` : ''}`);
    }
    const outcomeCell = (r: AttackResult) => (r.outcome === 'blocked' ? `blocked (${r.byKernel ? 'by the kernel itself' : mechanismShort(r.events)})` : r.outcome === 'allowed' ? `allowed${r.expect === 'blocked' ? ' — GOT THROUGH' : ''}` : r.detail.startsWith('unsupported') ? 'unsupported' : 'error');
    ctx.section(
      'Attack × kernel',
      { kind: 'text', text: `Each attack runs as the protected workload (its cgroup, uid nobody; the raw and packet-socket attacks as root inside it, aimed at ${lab.target.ip} in network namespace ${lab.target.ns}). "blocked" requires both: the attack did not get through (no marker from the shell, EPERM from the socket call, a killed socket creator) and a kernel event that names the rule; "blocked (by the kernel itself)" instead that the same attack outside every policy was refused too, so no rule was needed.` },
      { kind: 'table', columns: ['attack', 'class', 'what', 'expected', `kernel ${kernel}`, 'proving event'], rows: rows.map((r) => [r.name, r.class, r.what, r.expect, outcomeCell(r), r.events.length ? proof(r.events) : r.detail]) },
    );
    ctx.metric('attacks', rows.map((r) => ({ name: r.name, class: r.class, expect: r.expect, outcome: r.outcome, ok: r.ok, mechanism: mechanismShort(r.events), detail: r.detail, event: r.events[0] ?? null })));

    // --------------------------------------------------------------- positive controls
    ctx.progress.step('positive controls');
    const controls: AttackResult[] = [];
    for (const c of CONTROLS) controls.push(keep(await runAttack(c, lab)));
    const outside = { ...lab, cgroupDir: lab.outsideDir };
    controls.push(keep(await runAttack(ATTACKS.find((a) => a.name === 'exec-sh')!, outside, { expect: 'allowed', label: 'exec-sh outside the cgroup' })));
    controls.push(keep(await runAttack(ATTACKS.find((a) => a.name === 'tcp-disallowed-port')!, outside, { expect: 'allowed', label: 'tcp-disallowed-port outside the cgroup' })));
    controls.push(keep(await runAttack(ATTACKS.find((a) => a.name === 'icmp-ping-socket')!, outside, { expect: 'allowed', label: 'icmp-ping-socket outside the cgroup' })));
    controls.push(...outsideRuns.filter((r) => !r.unsupported && r.outcome === 'allowed'));
    for (const [name, label] of [['ptrace-inject', 'the shell runs in the victim'], ['ptrace-inject-ia32', 'the shell runs in the victim'], ['proc-mem', 'its memory is read and written'], ['proc-mem-uring', 'its memory is read and written through io_uring'], ['proc-mem-ia32', 'its memory is read and written']] as const) {
      const r = keep(await runAttack(ATTACKS.find((a) => a.name === name)!, outside, { expect: 'allowed', label: `${name} outside the cgroup (${label})` }));
      if (r.unsupported) ctx.unsupported(`control ${name} outside the cgroup`, name, `${r.detail} on ${kernel}`);
      else controls.push(r);
    }
    for (const name of ['raw-socket-udp', 'packet-socket', 'packet-socket-ia32', 'packet-socket-socketcall']) {
      const before = lab.target.received();
      const r = keep(await runAttack(ATTACKS.find((a) => a.name === name)!, outside, { expect: 'allowed', label: `${name} outside the cgroup (arrives in ${lab.target.ns})` }));
      if (r.unsupported) {
        ctx.unsupported(`control ${name} outside the cgroup`, name, `${r.detail} on ${kernel}`);
        continue;
      }
      for (let i = 0; i < 20 && lab.target.received() === before; i++) await new Promise((res) => setTimeout(res, 50));
      const arrived = lab.target.received() - before;
      controls.push({ ...r, ok: r.ok && arrived === 1, detail: `${r.detail}; the target received ${arrived} datagram(s)` });
    }
    // log-only: the same shell runs, and the decision is still reported
    lab.controller.store.apply(workloadPolicy(lab, { mode: 'log' }));
    controls.push(keep(await runAttack(ATTACKS.find((a) => a.name === 'exec-sh')!, lab, { expect: 'allowed', label: 'exec-sh under mode: log', wouldBlock: true })));
    controls.push(keep(await runAttack(ATTACKS.find((a) => a.name === 'tcp-disallowed-port')!, lab, { expect: 'allowed', label: 'tcp-disallowed-port under mode: log', wouldBlock: true })));
    for (const c of controls) {
      const strayEvents = c.name.includes('outside') && c.events.length > 0;
      ctx.check(`control ${c.name}: ${c.expect}`, c.ok && !strayEvents, `${c.outcome}: ${c.detail}${c.events.length ? ` | ${proof(c.events)}` : ''}`);
    }
    ctx.section('Positive controls', { kind: 'table', columns: ['control', 'expected', `kernel ${kernel}`, 'detail', 'event'], rows: controls.map((c) => [c.name, c.expect, c.outcome, c.detail, c.events.length ? proof(c.events) : '(none)']) });

    // --------------------------------------------------------------- selection by executable
    // Everything above selects the workload by its cgroup. A policy can select an executable
    // instead (its inode; children inherit the selection, and it lasts until the process's last
    // thread exits): attacks run outside the workload's cgroup by a copy of python3 that such a
    // policy selects, and python3 itself beside it as the control.
    ctx.progress.step('attacks from a process selected by its executable');
    const agent = path.join(lab.scratch, 'agent-python3');
    fs.copyFileSync(fs.realpathSync(PYTHON), agent);
    fs.chmodSync(agent, 0o755);
    lab.controller.store.apply(parsePolicies(`policies:\n  - name: agent\n    select: { executable: ${agent} }\n    exec: { deny: [shells] }\n    egress:\n      allow:\n        - { to: 127.0.0.1, ports: [${lab.listeners.allowedUdpPort}], protocol: udp }\n`, 'agent.yaml'));
    const byExe: AttackResult[] = [];
    for (const name of ['exec-sh', 'exec-grandchild', 'exec-leader-exit', 'connect-thread']) {
      const a = ATTACKS.find((x) => x.name === name)!;
      const missing = missingHook(a, m);
      if (missing) {
        ctx.unsupported(`attack ${name} (selected by executable)`, missing, `unsupported: ${missing} on ${kernel}`);
        continue;
      }
      const r = keep(await runAttack(a, outside, { python: agent, label: `${name} (selected by executable)` }));
      byExe.push(r);
      const stray = r.events.filter((e) => e.policy !== 'agent');
      ctx.check(`selected by executable: ${name}: blocked`, r.ok && !stray.length, `${r.outcome}: ${r.detail}${r.events.length ? ` | ${proof(r.events)}` : ''}${stray.length ? ` | events of another policy: ${stray.map((e) => e.policy).join(', ')}` : ''}`);
    }
    const notSelected = keep(await runAttack(ATTACKS.find((x) => x.name === 'exec-sh')!, outside, { expect: 'allowed', label: 'exec-sh by python3 itself (not selected)' }));
    byExe.push(notSelected);
    ctx.check('selected by executable: python3 itself is not selected', notSelected.ok && notSelected.events.length === 0, `${notSelected.outcome}: ${notSelected.detail}${notSelected.events.length ? ` | ${proof(notSelected.events)}` : ''}`);
    lab.controller.store.delete('agent');
    ctx.section(
      'Selection by executable',
      { kind: 'text', text: `Policy "agent" selects ${agent} (a copy of python3: its own inode) with the workload's shell deny-list and only UDP to port ${lab.listeners.allowedUdpPort}. The attacks run in ${lab.outsideDir}, outside the workload's cgroup, so nothing but the executable selects them; the last one runs python3 itself.` },
      { kind: 'table', columns: ['attack', 'expected', `kernel ${kernel}`, 'proving event'], rows: byExe.map((r) => [r.name, r.expect, outcomeCell(r), r.events.length ? proof(r.events) : r.detail]) },
    );
    ctx.metric('byExecutable', byExe.map((r) => ({ name: r.name, expect: r.expect, outcome: r.outcome, ok: r.ok, mechanism: mechanismShort(r.events), event: r.events[0] ?? null })));

    // --------------------------------------------------------------- deny-list only
    ctx.progress.step('exec attacks under a deny-list-only policy');
    lab.controller.store.apply(workloadPolicy(lab, { denyOnly: true }));
    const denyOnly: AttackResult[] = [];
    if (m.exec !== 'none') {
      for (const a0 of ATTACKS.filter((x) => x.class === 'exec' && x.expectDenyOnly)) {
        if (a0.name === 'exec-hardlink' && !lab.hardlink) continue;
        const a = a0.name === 'exec-hardlink' ? hardlinkAttack(lab) : a0;
        const r = keep(await runAttack(a, lab, { expect: a.expectDenyOnly }));
        denyOnly.push(r);
        ctx.check(`deny-list only: ${a.name}: ${a.expectDenyOnly}`, r.ok, `${r.outcome}: ${r.detail}`);
      }
    }
    ctx.section(
      'Why an allowlist: exec attacks under a deny-list-only policy',
      { kind: 'text', text: 'Identity by (device, inode) follows symlinks, hard links and #! interpreters, but a copy or a memfd is a new inode. With only `deny: [shells]` those two get through — expected, and the reason the workload policy also has `allow:` (its own binaries) and `denyNameless: true`.' },
      { kind: 'table', columns: ['attack', 'expected (deny-list only)', `kernel ${kernel}`, 'why', 'event'], rows: denyOnly.map((r) => [r.name, r.expect, r.outcome, (r.name === 'exec-hardlink' ? hardlinkAttack(lab) : ATTACKS.find((a) => a.name === r.name))?.note ?? 'same inode as a listed shell', r.events.length ? proof(r.events) : r.detail]) },
    );
    ctx.metric('denyOnly', denyOnly.map((r) => ({ name: r.name, expect: r.expect, outcome: r.outcome, ok: r.ok })));

    // --------------------------------------------------------------- update latency
    if (m.egress.includes('cgroup/sendmsg4')) {
      ctx.progress.step('policy update latency');
      const lat = await measureUpdateLatency(lab, ctx.mode === 'bench' ? 20 : 8);
      ctx.metric('updateLatency', lat);
      const eff = lat.samples.filter((x) => x.effectUs !== null).map((x) => x.effectUs! / 1000);
      if (eff.length) ctx.headline(headlineFromRounds({ name: 'policy.updateEffectMs', label: `policy update: apply() start → first blocked send (${eff.length} updates)`, unit: 'ms', better: 'lower', rounds: eff }));
      ctx.check('a policy update reaches the hooks', lat.samples.length > 0 && lat.samples.every((s) => s.effectUs !== null), `${lat.samples.length} updates`);
      ctx.section(
        'Policy update latency',
        { kind: 'text', text: 'A workload process sends a UDP datagram every ~100 µs to a port the policy allows; the controller applies a version without that port. Effect = kernel timestamp of the first blocked send minus the moment apply() started (resolving binaries and shells to inodes, map writes, selector flip); also measured from the selector flip itself, which bounds what a hook can see. No program is reloaded.' },
        { kind: 'kv', items: {
          'apply() median (ms)': lat.applyMs.median, 'apply() max (ms)': lat.applyMs.max,
          'map writes median (ms)': lat.writeMs.median,
          'first blocked send after apply() start, median (ms)': lat.effectMs.median, 'first blocked send after apply() start, max (ms)': lat.effectMs.max,
          'first blocked send after the selector flip, median (ms)': lat.afterSwitchMs.median,
          'probe resolution (ms)': 0.1,
        } },
      );
    }

    // --------------------------------------------------------------- events
    lab.controller.store.apply(workloadPolicy(lab));
    fs.writeFileSync(path.join(ctx.outDir, 'security-events.jsonl'), allEvents.map((e) => JSON.stringify(e)).join('\n') + '\n');
    const byKind = (k: string) => allEvents.filter((e) => e.kind === k).length;
    ctx.metric('events', { total: allEvents.length, exec: byKind('exec'), connect: byKind('connect'), sendmsg: byKind('sendmsg'), socket: byKind('socket'), ptrace: byKind('ptrace'), lost: lab.controller.lostEvents });
    ctx.section(
      'Events',
      { kind: 'kv', items: { total: allEvents.length, exec: byKind('exec'), connect: byKind('connect'), sendmsg: byKind('sendmsg'), socket: byKind('socket'), ptrace: byKind('ptrace'), 'would-block': allEvents.filter((e) => e.action === 'would-block').length, lost: lab.controller.lostEvents, file: 'security-events.jsonl' } },
      { kind: 'pre', caption: 'first events (JSON lines, as `pnpm lab policy events` prints them)', text: allEvents.slice(0, 6).map((e) => JSON.stringify(e)).join('\n') },
    );

    // --------------------------------------------------------------- closing note
    const byMech = new Map<string, string[]>();
    for (const r of rows.filter((x) => x.outcome === 'blocked')) {
      // an attack the kernel refuses outside every policy has no event of ours ("Stopped by :" was empty)
      const k = mechanismShort(r.events) || (r.byKernel ? 'the kernel itself (it refuses them outside every policy too)' : 'no event (see the attack table)');
      byMech.set(k, [...(byMech.get(k) ?? []), r.name]);
    }
    const through = rows.filter((r) => r.expect === 'blocked' && r.outcome === 'allowed').map((r) => r.name);
    // the policy's own score: attacks the kernel refuses by itself, and those with no hook on this
    // kernel (reported unsupported), are not its to stop. They were counted: 55/55 "met" with 6
    // stopped by the kernel alone, 51/55 "not met" with nothing through (review, session 57)
    const unsupportedHere = (r: AttackResult) => r.outcome === 'error' && r.detail.startsWith('unsupported');
    const expectBlocked = rows.filter((r) => r.expect === 'blocked' && !r.byKernel && !unsupportedHere(r));
    const byKernelN = rows.filter((r) => r.expect === 'blocked' && r.byKernel).length;
    const unsupportedN = rows.filter((r) => r.expect === 'blocked' && unsupportedHere(r)).length;
    const aside = [byKernelN ? `${byKernelN} more the kernel refuses by itself` : '', unsupportedN ? `${unsupportedN} unsupported on this kernel` : ''].filter(Boolean).join(', ');
    ctx.headline(headlineFromRounds({ name: 'enforcement.blocked', label: `attacks the policy stopped, of ${expectBlocked.length} it must stop on this kernel${aside ? ` (${aside}: not counted)` : ''}`, unit: 'attacks', better: 'higher', rounds: [expectBlocked.filter((r) => r.outcome === 'blocked').length], goal: { op: '>=', target: expectBlocked.length } }));
    ctx.headline(headlineFromRounds({ name: 'enforcement.gotThrough', label: 'attacks that got through although the policy must stop them', unit: 'attacks', better: 'lower', rounds: [through.length], goal: { op: '<=', target: 0 } }));
    ctx.section(
      'Closing note',
      { kind: 'text', text: [
        `On ${kernel}, exec was enforced by ${m.exec === 'lsm' ? 'BPF LSM (bprm_check_security)' : m.exec === 'tp-kill' ? 'the sched_process_exec tracepoint + SIGKILL fallback (BPF LSM unavailable: ' + m.lsmEvidence + ')' : 'nothing'}; egress by ${m.egress.join(', ') || 'nothing'}${m.lsmConnect ? ' and lsm/socket_connect' : ''}.`,
        ...[...byMech].map(([k, v]) => `Stopped by ${k}: ${v.join(', ')}.`),
        through.length ? `GOT THROUGH although expected blocked: ${through.join(', ')}.` : 'No attack expected to be blocked got through.',
      ].join('\n') },
    );

    if (ctx.mode === 'bench') await runBench(ctx, lab);
  },
};

export default scenario;
export type { ScenarioContext, Lab };
