// The security controller on a kernel that has BPF LSM built in but not active: Debian's 5.10
// (bullseye), whose default lsm= list leaves `bpf` out. LSM programs load and attach there and
// never run. The controller took them for working, attached no fallback, and enforced no exec,
// raw-socket, ptrace or source-route rule: the security scenario in such a guest let 47 attacks
// through (reports/20261206-202830-security-5.10). In a 5.10 guest booted without `bpf` in lsm=:
//   - `pnpm lab policy daemon` (the guest bundle) refuses to start, since 5.10's tracepoint
//     attachments cannot be pinned (no bpf_link before 5.15), and leaves nothing pinned;
//   - an unpinned controller (testdata/nolsm-guest.ts) chooses the fallbacks, kills a shell, and
//     its packet guard drops a source-routed datagram before and after net_cls (cgroup v1) is put
//     to use, which makes 5.10 file every new socket under the cgroup2 root.
// Two guests booted at once, ~40 s under TCG.
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureBundle } from '../../lab/bundle.ts';
import { vmExec, vmKernelArg } from '../../lab/vm/cli.ts';
import { vmSkipReason } from '../../lab/testing.ts';

const skipReason = vmSkipReason;

const ATTACK = `import os, socket, subprocess
open('/sys/fs/cgroup/nolsm-test/cgroup.procs', 'w').write(str(os.getpid()))
try: print('sh', subprocess.run(['/bin/sh', '-c', 'exit 7']).returncode, flush=True)
except OSError: print('sh', -1000, flush=True)
lsrr = bytes([1, 131, 7, 4]) + socket.inet_aton('127.0.0.1')
def send():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); d.bind(('127.0.0.1', 0))
    try: s.sendmsg([b'x'], [(0, 7, lsrr)], 0, d.getsockname()); return 0
    except OSError as e: return e.errno
print('lsrr', send(), flush=True)
os.makedirs('/tmp/nc', exist_ok=True)
subprocess.run(['mount', '-t', 'cgroup', '-o', 'net_cls', 'none', '/tmp/nc'], check=True)
open('/tmp/nc/net_cls.classid', 'w').write('65537')
print('lsrr-netcls', send(), flush=True)
`;

/** 5.10: the daemon's refusal, then an unpinned controller (testdata/nolsm-guest.ts) under attack */
const script510 = (cli: string) => `set -u
cat /sys/kernel/security/lsm; echo
timeout 600 ${cli} policy daemon > /tmp/daemon.out 2> /tmp/daemon.err
echo "daemon exit $?"
cat /tmp/daemon.err
echo "pins: $(find /sys/fs/bpf/ebpf-lab/security -mindepth 1 2>/dev/null | wc -l)"
node --import tsx controller/security/testdata/nolsm-guest.ts
echo "guest exit $?"
dmesg | grep -o 'disabling cgroup2 socket matching.*' | head -1
exit 0`;

/** 6.1: a previous build's inert LSM links pinned, then the daemon over them, a shell, stop */
const script61 = (cli: string) => `set -u
node --import tsx controller/security/testdata/inert-lsm-links.ts || exit 3
${cli} policy daemon > /tmp/daemon.out 2> /tmp/daemon.err &
for i in $(seq 1 1200); do grep -q '^links and maps are pinned' /tmp/daemon.err && break; sleep 0.1; done
cat /tmp/daemon.err
echo "links: $(ls /sys/fs/bpf/ebpf-lab/security/links | tr '\\n' ' ')"
mkdir -p /sys/fs/cgroup/nolsm-test
printf 'policies:\\n  - name: t\\n    select: { cgroup: /nolsm-test }\\n    exec: { deny: [shells] }\\n' > /tmp/p.yaml
${cli} policy apply /tmp/p.yaml >/dev/null || exit 4
sh -c 'echo $$ > /sys/fs/cgroup/nolsm-test/cgroup.procs; exec /bin/sh -c "exit 7"'
echo "sh exit $?"
${cli} policy stop >/dev/null 2>&1
echo "stop exit $?"
exit 0`;

describe.skipIf(!!skipReason)(`security daemon on 5.10 and 6.1 with BPF LSM built but not active ${skipReason ? `(skipped: ${skipReason})` : ''}`, () => {
  // both guests at once: each runs on one host thread under TCG, so the two boots overlap
  let guests: Record<string, { exitCode: number; o: string; all: string }> = {};
  beforeAll(async () => {
    const cli = `node ${await ensureBundle()}`;
    const prev = process.env.EBPF_LAB_VM_APPEND;
    // the last lsm= wins: Debian's list without bpf (lab/vm/cmdline.ts adds bpf to 5.10's)
    process.env.EBPF_LAB_VM_APPEND = 'lsm=lockdown,yama,apparmor';
    try {
      const [a, b] = await Promise.all([withoutBpfLsm('5.10', `export ATTACK=${shellQuote(ATTACK)}\n${script510(cli)}`), withoutBpfLsm('6.1', script61(cli))]);
      guests = { '5.10': a, '6.1': b };
    } finally {
      if (prev === undefined) delete process.env.EBPF_LAB_VM_APPEND;
      else process.env.EBPF_LAB_VM_APPEND = prev;
    }
  }, 720_000);

  it('sees that the LSM programs never run and enforces through the fallbacks; the daemon, which cannot pin their tracepoint links there, refuses to start and pins nothing; the packet guard drops a source route after net_cls is put to use', async () => {
    const { exitCode, o, all } = guests['5.10']!;
    {
      expect(exitCode, all).toBe(0);
      expect(o.split('\n')[0], 'the guest runs without bpf among its LSMs').not.toMatch(/(^|,)bpf(,|$)/);
      // the daemon: one line naming why and the fix, exit 1, nothing left pinned
      expect(o, all).toMatch(/^daemon exit 1$/m);
      expect(o, all).toMatch(/^error: cannot pin the syscall-tracepoint fallbacks used without BPF LSM on 5\.10\.\S+: this kernel attaches tracepoint programs without a bpf_link \(5\.15\+\), so they would end with this process$/m);
      expect(o, all).toMatch(/^ {2}fix: make BPF LSM active, which needs none of them: boot with bpf added to lsm= \(BPF LSM: the programs load and attach but never run: bpf is not among the active LSMs/m);
      expect(o, all).toMatch(/^pins: 0$/m);
      // the controller: the probe's verdict, the fallbacks and the guard chosen
      expect(o, all).toMatch(/^guest exit 0$/m);
      expect(o, all).toMatch(/^exec tp-kill$/m);
      expect(o, all).toMatch(/^lsm BPF LSM: the programs load and attach but never run: bpf is not among the active LSMs \([^)]*\); boot with lsm=[^ ]*,bpf$/m);
      expect(o, all).toMatch(/^routes .*cgroup_skb\/egress/m);
      // the shell is killed by the exec tracepoint's fallback
      expect(o, all).toMatch(/^sh -9$/m);
      // the route dropped by the socket's cgroup, and by its sender's policy once 5.10 has stopped
      // matching sockets to cgroup2
      expect(o, all).toMatch(/^lsrr 1$/m);
      expect(o, all).toMatch(/^disabling cgroup2 socket matching due to net_prio or net_cls activation/m);
      expect(o, all).toMatch(/^lsrr-netcls 1$/m);
      expect(o.match(/^event sockopt blocked IP_OPTIONS \(a source route option in the packet\) \/nolsm-test$/gm)?.length, all).toBe(2);
    }
  }, 720_000);

  // 6.1 pins tracepoint links (5.15+): there the daemon runs on the fallbacks. A previous build's
  // LSM links, pinned and inert, were re-adopted as BPF LSM that works: now they are detached and
  // the fallbacks attached in their place.
  it('on 6.1 without BPF LSM active, the daemon detaches a previous build\'s inert LSM links, pins the fallbacks and enforces through them', async () => {
    const { exitCode, o, all } = guests['6.1']!;
    {
      expect(exitCode, all).toBe(0);
      expect(o, all).toMatch(/^inert links pinned: sec_exec_lsm sec_connect_lsm sec_socket_lsm sec_ptrace_lsm sec_sendmsg_lsm$/m);
      expect(o, all).toMatch(/^security controller \d+: exec via tp-kill \(BPF LSM: the programs the previous controller attached never run: bpf is not among the active LSMs/m);
      expect(o, all).toMatch(/^adopt: detached 5 pinned links of the previous build that this one does not attach \(sec_exec_lsm, sec_connect_lsm, sec_socket_lsm, sec_ptrace_lsm, sec_sendmsg_lsm\)$/m);
      const links = /^links: (.*)$/m.exec(o)?.[1]?.trim().split(' ') ?? [];
      expect(links, all).toEqual(expect.arrayContaining(['sec_exec_tp', 'sec_socket_tp', 'sec_ptrace_tp']));
      expect(links.filter((l) => l.endsWith('_lsm')), all).toEqual([]);
      // killed by the exec tracepoint's fallback
      expect(o, all).toMatch(/^sh exit 137$/m);
      expect(o, all).toMatch(/^stop exit 0$/m);
    }
  }, 720_000);
});

/** `script` in a guest of `kernel` (EBPF_LAB_VM_APPEND set by the caller): its exit code, stdout, and both streams */
async function withoutBpfLsm(kernel: string, script: string): Promise<{ exitCode: number; o: string; all: string }> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const r = await vmExec(vmKernelArg(kernel), script, { quiet: true, stdout: (b) => out.push(b), stderr: (b) => err.push(b), timeoutMs: 600_000 });
  const o = Buffer.concat(out).toString();
  return { exitCode: r.exitCode, o, all: `${o}\n${Buffer.concat(err).toString()}` };
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
