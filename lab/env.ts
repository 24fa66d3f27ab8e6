// The environment a result was measured in: enough to tell two runs apart and to reproduce one.
import fs from 'node:fs';
import os from 'node:os';
import { execa } from 'execa';
import type { Environment } from './results.ts';

import { REPO_ROOT } from '../common/dist.ts';

export { REPO_ROOT };

async function firstLine(cmd: string, args: string[]): Promise<string | undefined> {
  const r = await execa(cmd, args, { reject: false });
  return r.exitCode === 0 ? (r.stdout || r.stderr).split('\n')[0]?.trim() : undefined;
}

export async function gitState(): Promise<Environment['git']> {
  try {
    // loaded here, not at the top: a guest's runner never asks, and compiling simple-git's
    // bundle is a measurable share of a process start under TCG
    const { simpleGit } = await import('simple-git');
    const git = simpleGit(REPO_ROOT);
    const commit = (await git.revparse(['HEAD'])).trim();
    const status = await git.status();
    return { commit, dirty: !status.isClean() };
  } catch {
    return { commit: null, dirty: false };
  }
}

export async function collectEnvironment(spec: string): Promise<Environment> {
  const cpus = os.cpus();
  const { libbpf } = await import('../controller/libbpf/index.ts');
  // inside a VM the host records the checkout's git state: `git status` over 9p under TCG costs seconds
  const inGuest = process.env.EBPF_LAB_IN_VM === '1';
  // …and the tool versions: the guest runs the host's own files, and starting clang (libLLVM)
  // over 9p costs seconds of the runner's start under TCG
  const [clang, bpftool, libbpfDeb, git] = await Promise.all([
    inGuest ? undefined : firstLine('clang', ['--version']),
    inGuest ? undefined : firstLine('bpftool', ['version']),
    inGuest ? undefined : firstLine('dpkg-query', ['-W', '-f=${Version}', 'libbpf1']),
    inGuest ? Promise.resolve({ commit: null, dirty: false }) : gitState(),
  ]);
  let inVm = false;
  try {
    inVm = fs.readFileSync('/proc/cmdline', 'utf8').includes('lab.fs=');
  } catch {
    /* not Linux? */
  }
  return {
    kernel: { release: os.release(), spec },
    target: inVm || spec !== 'host' ? 'vm' : 'host',
    cpu: { model: cpus[0]?.model ?? 'unknown', cores: cpus.length },
    memoryBytes: os.totalmem(),
    node: process.version,
    libbpf: `${libbpf.libbpf_major_version()}.${libbpf.libbpf_minor_version()}${libbpfDeb ? ` (Debian ${libbpfDeb})` : ''}`,
    clang,
    bpftool,
    git,
    hostname: os.hostname(),
  };
}
