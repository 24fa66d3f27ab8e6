// The protected workload's surroundings: cgroups, a launcher that puts a command into a cgroup as
// an unprivileged user before it execs (so the first exec already happens under the policy), a
// real PostgreSQL on loopback, and listeners that count what the attacks manage to send.
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../common/net.ts';
import { cacheDir } from '../../common/paths.ts';
import { runTempDir } from '../../common/stale.ts';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ATTACKS_DIR = path.join(HERE, 'attacks');
export const PYTHON = '/usr/bin/python3';
export const NOBODY = { uid: 65534, gid: 65534 };

// join the cgroup, drop to the workload user, then exec: everything from the exec on is the workload
const LAUNCHER = `import os,sys
cg,uid,gid=sys.argv[1],int(sys.argv[2]),int(sys.argv[3])
open(cg+'/cgroup.procs','w').write(str(os.getpid()))
os.setgroups([]); os.setgid(gid); os.setuid(uid)
os.execve(sys.argv[4], sys.argv[4:], os.environ)`;

/**
 * Python without the site module: the launcher and the attacks use only the standard library, and
 * `import site` is half of a Python start under TCG (6.1 guest: 0.54 s → 0.28 s per start; each
 * attack starts two). Exploratory, `pnpm lab vm exec 6.1`, no stored run.
 */
export const PY_FAST = ['-S'];

/** argv to run an attack file: its interpreter (Python without site) and the file */
/** python: another python3 binary for the .py attacks (a copy, selected by its executable) */
export function attackArgv(file: string, python = PYTHON): string[] {
  return file.endsWith('.py') ? [python, ...PY_FAST, file] : [interpreterFor(file), file];
}

export function interpreterFor(file: string): string {
  if (file.endsWith('.py')) return PYTHON;
  if (file.endsWith('.pl')) return '/usr/bin/perl';
  if (file.endsWith('.mjs')) return process.execPath;
  throw new Error(`no interpreter for ${file}`);
}

export interface LaunchResult {
  exitCode: number | undefined;
  signal?: string;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Run argv in cgroup `cgDir` as `user`, with env; resolves when it exits. */
export async function launch(cgDir: string, argv: string[], env: Record<string, string>, opts: { user?: { uid: number; gid: number }; timeoutMs?: number } = {}): Promise<LaunchResult> {
  const u = opts.user ?? NOBODY;
  const t0 = performance.now();
  const r = await execa(PYTHON, [...PY_FAST, '-c', LAUNCHER, cgDir, String(u.uid), String(u.gid), ...argv], {
    env, extendEnv: false, reject: false, timeout: opts.timeoutMs ?? 30_000, stdin: 'ignore',
  });
  return { exitCode: r.exitCode, signal: r.signal ?? undefined, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? ''), ms: performance.now() - t0 };
}

/** Start a long-running process in a cgroup (for probes and benchmarks). */
export function launchBackground(cgDir: string, argv: string[], env: Record<string, string>, user = NOBODY, stdin: 'ignore' | 'pipe' = 'ignore') {
  return execa(PYTHON, [...PY_FAST, '-c', LAUNCHER, cgDir, String(user.uid), String(user.gid), ...argv], { env, extendEnv: false, reject: false, stdin, buffer: false });
}

// ------------------------------------------------------------------ listeners

export interface Listeners {
  tcpPort: number;
  udpPort: number;
  allowedUdpPort: number;
  tcpAccepted: number;
  udpReceived: number;
  close(): Promise<void>;
}

/** Dual-stack TCP and UDP listeners on :: (so v4, v6 and v4-mapped attempts all land here). */
export async function startListeners(): Promise<Listeners> {
  const l = { tcpAccepted: 0, udpReceived: 0 } as Listeners;
  const tcp = net.createServer((s) => {
    l.tcpAccepted++;
    s.destroy();
  });
  await new Promise<void>((r) => tcp.listen({ port: 0, host: '::', ipv6Only: false }, () => r()));
  const udp = dgram.createSocket({ type: 'udp6', ipv6Only: false });
  udp.on('message', () => l.udpReceived++);
  await new Promise<void>((r) => udp.bind(0, '::', () => r()));
  const ok = dgram.createSocket({ type: 'udp6', ipv6Only: false });
  await new Promise<void>((r) => ok.bind(0, '::', () => r()));
  l.tcpPort = (tcp.address() as net.AddressInfo).port;
  l.udpPort = udp.address().port;
  l.allowedUdpPort = ok.address().port;
  l.close = async () => {
    await new Promise<void>((r) => tcp.close(() => r()));
    udp.close();
    ok.close();
  };
  return l;
}

// ------------------------------------------------------------------ PostgreSQL

export interface Postgres {
  port: number;
  bin: string;
  psql: string;
  dataDir: string;
  pid: number;
  stop(): Promise<void>;
}

async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}


/** Debian's PostgreSQL server binaries and the postgres user */
function postgresInstall(): { bin: string; version: string; user: { uid: number; gid: number } } {
  const versions = fs.existsSync('/usr/lib/postgresql') ? fs.readdirSync('/usr/lib/postgresql').sort((a, b) => Number(b) - Number(a)) : [];
  const bin = versions.map((v) => `/usr/lib/postgresql/${v}/bin`).find((d) => fs.existsSync(path.join(d, 'initdb')));
  if (!bin) throw new Error('PostgreSQL is not installed (pnpm lab setup installs the "security" group)');
  const pw = fs.readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postgres:'))?.split(':');
  if (!pw) throw new Error('no postgres user (the postgresql package creates it)');
  return { bin, version: path.basename(path.dirname(bin)), user: { uid: Number(pw[2]), gid: Number(pw[3]) } };
}

// 1 MB WAL segments: the template's pg_wal is 1 MB instead of 16, which a guest reads over 9p
const INITDB_ARGS = ['-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync', '--wal-segsize=1'];

async function initdb(bin: string, user: { uid: number; gid: number }, dir: string): Promise<void> {
  const init = await execa(path.join(bin, 'initdb'), ['-D', dir, ...INITDB_ARGS], { ...user, reject: false, cwd: path.dirname(dir), env: { LANG: 'C' } });
  if (init.exitCode !== 0) throw new Error(`initdb failed: ${init.stderr}`);
}

/**
 * An initdb'd cluster to unpack per run, a tar file in the lab cache keyed by the server's build
 * and the initdb arguments. initdb took 12 s in a quiet 6.1 TCG guest and 25-65 s per security
 * cell in a loaded matrix (reports/matrix-3x5-20261130-103147), 0.7 s natively: a guest unpacks
 * the host's template instead (its tree is the host's, read-only). One file, not a directory:
 * `cp -a` of the 992-file cluster over 9p took 6.3-7.4 s in that guest, `tar -x` of one 28 MB
 * file 1.1 s. Made on the host only, before a VM boots (the scenario's vm.prepare) or on a host
 * run's first start; as root, so tar keeps the postgres owner and the 0700 the server insists on.
 */
function templatePath(bin: string, version: string): string {
  const build = fs.statSync(path.join(bin, 'postgres'));
  const key = `${version}-${build.size}-${Math.round(build.mtimeMs)}-${INITDB_ARGS.join('').replace(/[^\w]/g, '')}`;
  return path.join(cacheDir('postgres'), `${key}.tar`);
}

/** build the template cluster if missing (host side; a guest cannot write the cache) */
export async function preparePostgresTemplate(log: (s: string) => void = () => {}): Promise<string | null> {
  let pg: ReturnType<typeof postgresInstall>;
  try {
    pg = postgresInstall();
  } catch {
    return null; // not installed: the run says so where it needs PostgreSQL
  }
  const tpl = templatePath(pg.bin, pg.version);
  if (fs.existsSync(tpl)) return tpl;
  if (process.env.EBPF_LAB_IN_VM === '1') return null;
  // initdb in the temp dir (the postgres user may not enter the checkout, e.g. under /root)
  const work = runTempDir('pg-template');
  const part = `${tpl}.part-${process.pid}`;
  try {
    fs.chownSync(work, pg.user.uid, pg.user.gid);
    log(`initdb a template cluster for PostgreSQL ${pg.version} into ${tpl}`);
    await initdb(pg.bin, pg.user, path.join(work, 'data'));
    fs.mkdirSync(path.dirname(tpl), { recursive: true });
    await execa('tar', ['-C', path.join(work, 'data'), '-cf', part, '.']);
    fs.renameSync(part, tpl); // whole or not at all
    return tpl;
  } catch (e) {
    fs.rmSync(part, { force: true });
    log(`no PostgreSQL template (${(e as Error).message.split('\n')[0]}): each run initdbs its own`);
    return null;
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/**
 * Debian's PostgreSQL, unpacked from the template (or initdb'd) into a temp dir and started as the
 * postgres user on 127.0.0.1 (5432 when free; another developer's run may hold it, then a free
 * port, reported as such).
 */
export async function startPostgres(log: (s: string) => void): Promise<Postgres> {
  const { bin, version, user } = postgresInstall();
  const dataDir = runTempDir('pg');
  fs.chownSync(dataDir, user.uid, user.gid);
  const port = (await portFree(5432)) ? 5432 : await freePort();
  const tpl = await preparePostgresTemplate(log);
  try {
    if (tpl) {
      log(`PostgreSQL ${version}: the template cluster unpacked in ${dataDir}, port ${port}`);
      fs.mkdirSync(path.join(dataDir, 'data'));
      await execa('tar', ['-C', path.join(dataDir, 'data'), '-xf', tpl]);
    } else {
      log(`initdb ${dataDir} (PostgreSQL ${version}), port ${port}`);
      await initdb(bin, user, path.join(dataDir, 'data'));
    }
  } catch (e) {
    fs.rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }
  const proc = execa(path.join(bin, 'postgres'), ['-D', path.join(dataDir, 'data'), '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-k', dataDir, '-c', 'fsync=off', '-c', 'shared_buffers=16MB', '-c', 'max_connections=20'], {
    ...user, reject: false, cwd: dataDir, env: { LANG: 'C' }, stdin: 'ignore', stdout: 'ignore', stderr: ['pipe'],
  });
  let errText = '';
  proc.stderr?.on('data', (d: Buffer) => (errText += d.toString()));
  const stop = async () => {
    if (proc.exitCode === null && proc.pid) {
      process.kill(proc.pid, 'SIGINT'); // fast shutdown
      // unref'd: a pending guard held the runner's exit ~10 s after every run
      await Promise.race([proc, new Promise((r) => setTimeout(r, 10_000).unref())]);
      if (proc.exitCode === null) process.kill(proc.pid, 'SIGKILL');
    }
    fs.rmSync(dataDir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    const r = await execa(path.join(bin, 'pg_isready'), ['-h', '127.0.0.1', '-p', String(port), '-t', '1'], { reject: false });
    if (r.exitCode === 0) break;
    if (proc.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`PostgreSQL did not start: ${errText.slice(-500)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { port, bin, psql: path.join(bin, 'psql'), dataDir, pid: proc.pid!, stop };
}
