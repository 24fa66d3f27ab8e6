// A tiny spawn wrapper. The VM code avoids execa: execa 10 uses Set.prototype.union, which
// Node 20 does not have, and the VM target must run on the Node the host has.
import { spawn } from 'node:child_process';

export interface RunResult {
  exitCode: number;
  stdout: Buffer;
  stderr: string;
}

export async function run(
  cmd: string,
  args: string[],
  opts: { input?: Buffer | string; signal?: AbortSignal; reject?: boolean; cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], signal: opts.signal, cwd: opts.cwd, env: opts.env });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.stdin.on('error', () => { /* the tool may exit before reading all input (e.g. trailing padding) */ });
    child.on('close', (code, sig) => {
      const r = { exitCode: code ?? (sig ? 128 : 1), stdout: Buffer.concat(out), stderr: err };
      if (r.exitCode !== 0 && opts.reject !== false) reject(new Error(`${cmd} ${args.join(' ')} exited ${r.exitCode}: ${err.trim().slice(0, 500)}`));
      else resolve(r);
    });
    child.stdin.end(opts.input ?? '');
  });
}
