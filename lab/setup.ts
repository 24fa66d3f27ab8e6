// `pnpm lab setup`: install the Debian packages the lab needs. Idempotent and quiet when done:
// dpkg-query says what is missing, and only that goes to apt-get. The main-job commands call
// ensureTools() so a fresh machine needs no manual step.
import { execa } from 'execa';
import { parseArgs, suggest, UsageError } from '../common/args.ts';
import { LabError } from '../common/errors.ts';

/** Debian package per capability; scenarios name the groups they need (Scenario.tools). */
export const PACKAGES: Record<string, string[]> = {
  // building and inspecting BPF objects
  // (+ a font: report charts are drawn server-side and a bare machine has none)
  build: ['clang', 'llvm', 'libbpf-dev', 'bpftool', 'libbpf1', 'make', 'iproute2', 'fonts-dejavu-core'],
  // C reference consumers (opensnoop) for the hello-openat benchmark
  'libbpf-tools': ['libbpf-tools'],
  // the VM lab: QEMU, a static busybox for the initramfs, kernel package extraction
  // (+ gpgv and Debian's archive keys: the suites' InRelease signatures are checked; gpg and its
  // agent make a test mirror's key in lab/vm/fetch.test.ts)
  vm: ['qemu-system-x86', 'qemu-utils', 'busybox-static', 'zstd', 'xz-utils', 'kmod', 'cpio', 'gpgv', 'debian-archive-keyring', 'gpg', 'gpg-agent'],
  // --vm-backend vng: virtme-ng itself comes from PyPI into a lab-owned venv (lab/vm/vng.ts)
  // udev: vng's guest init finds its command's stdin/stdout/exit-status ports under
  // /dev/virtio-ports, which only udevd (run from the host's tree in the guest) creates;
  // file: vng runs `file -L` on busybox and fails without it (a bare Debian has none), and
  // `file`/`strings` (binutils) on the bzImage for its version
  vng: ['python3-venv', 'qemu-system-x86', 'busybox-static', 'udev', 'file', 'binutils'],
  // load balancer benchmark peers and load generators (+ perf for `bench xdp-lb --profile`)
  lb: ['haproxy', 'nginx', 'libnginx-mod-stream', 'wrk', 'iperf3', 'ethtool', 'curl', 'linux-perf'],
  // runtime security positive controls and attack interpreters
  security: ['postgresql', 'postgresql-client', 'python3', 'perl'],
  // the published site's browser tests: headless Chromium driven over CDP by puppeteer-core
  publish: ['chromium'],
  // socket LB (controller/svc): the classic alternatives it is measured against, python3 for its client
  svc: ['iptables', 'ipvsadm', 'python3'],
  // energy: the context-switch microbenchmark (perf bench sched pipe) and a known-CPU burner
  energy: ['linux-perf', 'python3'],
  // zero-code tracing: the traced chain's services (Jaeger is built with the machine's Go: see EXTRA)
  tracing: ['nginx', 'python3', 'curl', 'wrk'],
  // tc shaping: flows, a small-packet RTT probe, tc for fq/HTB/TBF
  tc: ['iperf3', 'iputils-ping', 'iproute2', 'ethtool'],
};

/** groups that need more than Debian packages: run after apt, once (cached) */
const EXTRA: Record<string, () => Promise<string>> = {
  tracing: async () => {
    const { ensureJaeger, ensureZipkin, ensureVegeta } = await import('../controller/tracing/backend.ts');
    // Zipkin is the optional second backend: its absence (no mvn, no Maven Central) is not fatal.
    // It comes first: a download, where Jaeger is a build of minutes that tests may be waiting on
    const z = await ensureZipkin().then((x) => (x.fetched ? `Zipkin fetched in ${x.seconds} s → ${x.path}` : `Zipkin cached at ${x.path}`), (e: Error) => `Zipkin skipped: ${e.message}`);
    const r = await ensureJaeger();
    const jaeger = r.built ? `Jaeger built in ${r.info?.seconds} s → ${r.path}` : `Jaeger cached at ${r.path}${r.info ? ` (built in ${r.info.seconds} s with ${r.info.go})` : ''}`;
    // the bench's open-loop generator for its paced runs
    const v = await ensureVegeta();
    const vegeta = v.built ? `vegeta built in ${v.seconds} s → ${v.path}` : `vegeta cached at ${v.path}`;
    return `${jaeger}\n${z}\n${vegeta}`;
  },
};

async function missing(pkgs: string[]): Promise<string[]> {
  const r = await execa('dpkg-query', ['-W', '-f=${Package} ${db:Status-Abbrev}\n', ...pkgs], { reject: false });
  const installed = new Set(
    r.stdout
      .split('\n')
      .filter((l) => /\sii\s*$/.test(l))
      .map((l) => l.split(' ')[0]!.replace(/:.*$/, '')),
  );
  return pkgs.filter((p) => !installed.has(p));
}

let aptUpdated = false;

/** Install whatever of the named groups is missing. Returns the packages it installed. */
export async function ensureTools(groups: string[], log: (s: string) => void = (s) => console.error(s)): Promise<string[]> {
  const unknown = groups.filter((g) => !PACKAGES[g]);
  if (unknown.length) throw new LabError(`unknown tool group(s): ${unknown.join(', ')}`, `use one of: ${Object.keys(PACKAGES).join(', ')}`);
  const want = [...new Set(groups.flatMap((g) => PACKAGES[g]!))];
  const todo = await missing(want);
  if (todo.length === 0) return [];
  if (process.getuid?.() !== 0) {
    throw new LabError(`missing Debian packages: ${todo.join(' ')}`, `run as root: pnpm lab setup   (or apt-get install ${todo.join(' ')})`);
  }
  log(`installing ${todo.join(' ')} …`);
  if (!aptUpdated) {
    const u = await aptGet(['update', '-qq'], log);
    if (u.exitCode !== 0) throw new LabError(`apt-get update failed:\n${u.all?.split('\n').slice(-15).join('\n')}`, 'check the apt sources and network, then run pnpm lab setup again');
    aptUpdated = true;
  }
  const r = await aptGet(['install', '-y', '-qq', '--no-install-recommends', ...todo], log);
  if (r.exitCode !== 0) throw new LabError(`apt-get install failed:\n${r.all?.split('\n').slice(-15).join('\n')}`, 'check the apt sources and network, then run pnpm lab setup again');
  return todo;
}

/** how long apt-get waits for a lock another apt holds (unattended-upgrades, a second lab run) */
const APT_LOCK_WAIT_MS = 5 * 60_000;

/**
 * apt-get, waiting for its locks instead of failing at once with "Could not get lock" (apt-get's
 * default: on a Debian machine unattended-upgrades often holds them, and two lab runs started on a
 * fresh machine both install). DPkg::Lock::Timeout covers the dpkg lock of `install`; `update`'s
 * lists lock ignores it (apt 2.6), so a failure naming a lock is retried until the same bound.
 */
export async function aptGet(args: string[], log: (s: string) => void) {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const until = Date.now() + APT_LOCK_WAIT_MS;
  for (let said = false; ; said = true) {
    const r = await execa('apt-get', ['-o', `DPkg::Lock::Timeout=${APT_LOCK_WAIT_MS / 1000}`, ...args], { env, reject: false, all: true });
    const held = r.exitCode !== 0 && /Could not get lock|Unable to lock/.test(r.all ?? '');
    if (!held || Date.now() > until) return r;
    if (!said) log(`waiting for another apt to finish (${(r.all ?? '').match(/held by process \d+ \([^)]*\)/)?.[0] ?? 'it holds its lock'}) …`);
    await new Promise((res) => setTimeout(res, 2000));
  }
}

export async function setupCommand(argv: string[]): Promise<number> {
  const p = parseArgs(argv, {
    usage: 'pnpm lab setup [group…]',
    summary: `install the Debian packages the lab needs (idempotent); groups: ${Object.keys(PACKAGES).join(', ')} (default: all; a named tracing group also builds Jaeger and fetches Zipkin)`,
    options: {},
    positionals: { names: ['group'] },
  });
  if (!p) return 0;
  const unknown = p.positionals.filter((g) => !PACKAGES[g]);
  if (unknown.length) {
    const s = suggest(unknown[0]!, Object.keys(PACKAGES));
    throw new UsageError(`unknown tool group ${JSON.stringify(unknown[0])}${s ? ` (did you mean ${s}?)` : ''}`, `groups: ${Object.keys(PACKAGES).join(', ')}`);
  }
  const groups = p.positionals.length ? p.positionals : Object.keys(PACKAGES);
  const installed = await ensureTools(groups);
  // explicitly asked for only: it downloads from PyPI
  if (p.positionals.includes('vng')) {
    const { installVng } = await import('./vm/index.ts');
    console.log(`virtme-ng: ${await installVng((s) => console.error(s))}`);
  }
  console.log(installed.length ? `installed: ${installed.join(' ')}` : `all set (${groups.join(', ')})`);
  // extras (Jaeger: a Go build of ~3.5 min cold on 2 cores, seconds with Go's build cache) run only when their group is named, so a
  // plain `setup` (and the test suite's) stays minutes; `run tracing` builds Jaeger on first use
  for (const g of p.positionals) if (EXTRA[g]) console.log(await EXTRA[g]!());
  const skipped = p.positionals.length ? [] : Object.keys(EXTRA);
  if (skipped.length) console.log(`not built by a plain setup: ${skipped.map((g) => `pnpm lab setup ${g}`).join(', ')} (Jaeger, Zipkin; \`run tracing\` builds Jaeger on first use); not installed by it: virtme-ng (pnpm lab setup vng, from PyPI)`);
  return 0;
}
