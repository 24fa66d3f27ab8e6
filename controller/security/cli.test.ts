// Every expected failure of `pnpm lab policy …` (and the lab's top-level ones) as a user meets it:
// a real CLI process, one `error:` line with a `fix:`, the documented exit code, no stack trace.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EVENTS_PATH, PIN_DIR, runningDaemon } from './controller.ts';
import { labCli } from '../../lab/testing.ts';

const [NODE, ...LAB] = await labCli();

const ROOT = path.join(import.meta.dirname, '../..');
const CLI = path.join(ROOT, 'lab/cli.ts');
// made in beforeAll: the module runs even where every test is skipped or filtered out, the hooks do not
let tmp = '';
beforeAll(() => void (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'seccli-'))));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function lab(args: string[], cwd = ROOT) {
  const r = await execa(NODE, [...LAB, ...args], { reject: false, cwd, env: { EBPF_LAB_DEBUG: '' } });
  return { code: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
}

function file(name: string, text: string): string {
  const f = path.join(tmp, name);
  fs.writeFileSync(f, text);
  return f;
}

const STACK = /^\s+at .+\(?.*:\d+:\d+\)?$/m;

describe('lab CLI failure modes: one line, a fix, no stack trace', () => {
  const isRoot = process.getuid?.() === 0;
  // [args, exit code, stderr must match]
  const cgroup = isRoot ? '/' : '/';
  const cases: [string, () => string[], number, RegExp][] = [
    ['policy without a command', () => ['policy'], 2, /error: policy needs a command\n\s+fix: pnpm lab policy --help/],
    ['policy with a typo', () => ['policy', 'lst'], 2, /error: unknown policy command "lst" \(did you mean "list"\?\)\n\s+fix: commands: /],
    ['policy apply without a file', () => ['policy', 'apply'], 2, /error: missing <file>\n\s+fix: usage: pnpm lab policy apply <file>/],
    ['policy apply of a missing file', () => ['policy', 'apply', 'no/such.yaml'], 1, /error: cannot read policy file no\/such\.yaml: no such file\n\s+fix: /],
    ['policy apply of a directory', () => ['policy', 'apply', tmp], 1, /error: cannot read policy file .*: it is a directory\n\s+fix: give a YAML or JSON file/],
    ['policy validate: "shell" and a directory, path as given', () => ['policy', 'validate', path.relative(ROOT, file('typo.yaml', `policies:\n  - name: t\n    select: { cgroup: ${cgroup} }\n    exec: { deny: [shell, /usr/bin] }\n`))], 1,
      /typo\.yaml:4:20: policies\[0\]\.exec\.deny\[0\]: "shell" is not an absolute path \(did you mean "shells"\?\)[\s\S]*"\/usr\/bin" is a directory[\s\S]*fix: correct the fields listed; nothing was changed/],
    ['policy validate of an empty list', () => ['policy', 'validate', file('empty.yaml', 'policies: []\n')], 1, /error: .*empty\.yaml lists no policies: applying it would change nothing\n\s+fix: /],
    ['policy validate of a policy too big to ever update', () => ['policy', 'validate', file('big.yaml', `policies:\n  - name: big\n    select: { cgroup: ${cgroup} }\n    egress: { allow: [{ to: 127.0.0.1, ports: [${Array.from({ length: 10000 }, (_, i) => i + 1).join(',')}] }] }\n`)], 1,
      /capacity: exec_rules 16384, egress_rules 16384 entries|error: .*big\.yaml: policy big needs 0 exec \/ 10000 egress entries: more than half the capacity/],
    ['policy daemon with a bad --lsm', () => ['policy', 'daemon', '--lsm', 'of'], 2, /error: --lsm "of": expected one of auto, off\n\s+fix: did you mean --lsm off\?/],
    ['policy events with an unknown flag', () => ['policy', 'events', '--folow'], 2, /error: unknown option --folow \(did you mean --follow\?\)/],
    ['policy delete without names', () => ['policy', 'delete'], 2, /error: name the policies to delete, or give --all/],
    ['unknown lab command', () => ['polcy'], 2, /unknown command "polcy"/],
    ['run of an unknown scenario', () => ['run', 'nosuch'], 2, /error: unknown scenario "nosuch"\n\s+fix: available: /],
  ];
  if (!fs.existsSync(PIN_DIR)) {
    cases.push(
      ['policy apply with no controller', () => ['policy', 'apply', file('ok.yaml', `policies:\n  - name: ok\n    select: { cgroup: ${cgroup} }\n    exec: { deny: [shells] }\n`)], 1, /error: no security controller: nothing is pinned at .*\n\s+fix: start one: pnpm lab policy daemon/],
      ['policy list with no controller', () => ['policy', 'list'], 1, /error: no security controller: nothing is pinned/],
    );
  }
  for (const [what, args, code, re] of cases) {
    it(`${what}: exit ${code}`, async () => {
      const r = await lab(args());
      expect(r.stderr, r.stderr).toMatch(re);
      expect(r.code, r.stderr).toBe(code);
      expect(r.stderr).not.toMatch(STACK);
      // one error line and a fix line (a policy file's located issues sit between the two)
      if (code !== 0 && !/usage:|unknown command/.test(r.stderr)) {
        expect(r.stderr).toMatch(/^error: .+$/m);
        expect(r.stderr).toMatch(/^\s+fix: .+$/m);
      }
    });
  }

  it('--help on every policy command prints its usage and exits 0', async () => {
    for (const c of ['daemon', 'apply', 'validate', 'list', 'connections', 'delete', 'events', 'shells', 'stop']) {
      const r = await lab(['policy', c, '--help']);
      expect(r.code, c).toBe(0);
      expect(r.stdout).toContain(`usage: pnpm lab policy ${c}`);
    }
  });

  it('validate states the capacity a file needs', async () => {
    const r = await lab(['policy', 'validate', file('cap.yaml', `policies:\n  - name: c\n    select: { cgroup: / }\n    egress: { allow: [{ to: 127.0.0.1, ports: [1, 2, 3] }] }\n`)]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('c: 0 exec and 3 egress entries; raw/packet sockets denied');
    expect(r.stdout).toMatch(/capacity: exec_rules 16384, egress_rules 16384 entries/);
  });
});

describe('policy events without a daemon', () => {
  const why = process.getuid?.() !== 0 ? 'needs root (/run/ebpf-lab)' : runningDaemon() ? 'a policy daemon is running' : '';
  it.skipIf(!!why)(`prints the recorded events with a note that nothing records them now${why ? ` (skipped: ${why})` : ''}`, async () => {
    const made = !fs.existsSync(EVENTS_PATH);
    const madeDir = made && fs.mkdirSync(path.dirname(EVENTS_PATH), { recursive: true });
    if (made) {
      fs.writeFileSync(EVENTS_PATH, '{"kind":"exec","verdict":"deny","test":true}\n');
    }
    try {
      const r = await lab(['policy', 'events']);
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(/^note: no daemon is running: these events were recorded up to \d{4}-\d\d-\d\dT/);
      if (made) expect(r.stdout).toBe('{"kind":"exec","verdict":"deny","test":true}');
    } finally {
      if (made) fs.rmSync(EVENTS_PATH);
      // mkdirSync gives the first directory it made: remove exactly what this test added
      if (madeDir) fs.rmSync(madeDir, { recursive: true });
    }
  }, 30_000);
});

describe('output into a closed pipe (pnpm lab … | head)', () => {
  const writer = (quiet: boolean) => `${quiet ? `import { quietOnLostOutput } from ${JSON.stringify(path.join(ROOT, 'common', 'stdio.ts'))}; quietOnLostOutput();` : ''}
const line = 'x'.repeat(1000) + '\\n';
for (let i = 0; i < 5000; i++) process.stdout.write(line);
setTimeout(() => process.stderr.write('finished\\n'), 200);`;
  const run = async (quiet: boolean) => {
    const f = path.join(os.tmpdir(), `ebpf-lab-epipe-${process.pid}-${quiet}.ts`);
    fs.writeFileSync(f, writer(quiet));
    try {
      const r = await execa('bash', ['-c', `"${process.execPath}" --import tsx "${f}" | head -c 100 >/dev/null; echo "rc=\${PIPESTATUS[0]}" >&2`], { reject: false, cwd: ROOT });
      return String(r.stderr);
    } finally {
      fs.rmSync(f, { force: true });
    }
  };

  it('without the handler Node dies of EPIPE (the failure this guards against)', async () => {
    const err = await run(false);
    expect(err).toMatch(/EPIPE/);
    expect(err).not.toContain('rc=0');
  });

  it('with common/stdio quietOnLostOutput the command finishes normally and exits 0', async () => {
    const err = await run(true);
    expect(err).toContain('finished');
    expect(err).toContain('rc=0');
    expect(err).not.toMatch(/EPIPE|\n\s+at /);
  });

  it('the lab CLI itself: policy --help | head -c 5 exits 0 without an error', async () => {
    const r = await execa('bash', ['-c', `"${process.execPath}" --import tsx "${CLI}" policy --help | head -c 5 >/dev/null; echo "rc=\${PIPESTATUS[0]}" >&2`], { reject: false, cwd: ROOT });
    expect(String(r.stderr)).toBe('rc=0');
  });
});
