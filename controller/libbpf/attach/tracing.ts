// Tracing hooks: tracepoints, raw tracepoints, BTF-typed hooks (tp_btf, fentry/fexit, fmod_ret),
// LSM and kprobes, all bpf_links made by libbpf. A missing target is ENOENT (AttachError.code).
import fs from 'node:fs';
import { B } from '../ffi.ts';
import { AttachInputError, BpfError, errnoName } from '../errors.ts';
import type { Link } from '../link.ts';
import type { Program } from '../object.ts';
import { linkFrom } from './internal.ts';

// names as the kernel spells them in tracefs and kallsyms (kprobes may name a module's symbol)
const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
const SYMBOL = /^[A-Za-z_][A-Za-z0-9_.]*$/;

function checkName(what: string, name: string, re: RegExp): void {
  if (!re.test(name)) throw new AttachInputError('tracing', `${what} "${name}" is not a valid name`, 'use the name as listed in /sys/kernel/tracing (tracepoints) or /proc/kallsyms (functions)');
}

/** Attach by section name (SEC("tp/…"), SEC("tp_btf/…"), SEC("kprobe/…") …). */
export function attachAuto(prog: Program): Link {
  return linkFrom('tracing', prog, prog.section, () => B.bpf_program__attach(prog.ptr));
}

export function attachTracepoint(prog: Program, category: string, name: string): Link {
  checkName('tracepoint category', category, IDENT);
  checkName('tracepoint', name, IDENT);
  return linkFrom('tracing', prog, `tracepoint ${category}/${name}`, () => B.bpf_program__attach_tracepoint(prog.ptr, category, name));
}

export function attachRawTracepoint(prog: Program, name: string): Link {
  checkName('raw tracepoint', name, IDENT);
  return linkFrom('tracing', prog, `raw_tp ${name}`, () => B.bpf_program__attach_raw_tracepoint(prog.ptr, name));
}

/** fentry/fexit/tp_btf/fmod_ret: the target comes from the section name */
export function attachTrace(prog: Program): Link {
  return linkFrom('tracing', prog, `trace ${prog.section}`, () => B.bpf_program__attach_trace(prog.ptr));
}

export function attachLsm(prog: Program): Link {
  return linkFrom('tracing', prog, `lsm ${prog.section}`, () => B.bpf_program__attach_lsm(prog.ptr));
}

export function attachKprobe(prog: Program, func: string, retprobe = false): Link {
  checkName('kernel function', func, SYMBOL);
  return linkFrom('tracing', prog, `${retprobe ? 'kretprobe' : 'kprobe'} ${func}`, () => B.bpf_program__attach_kprobe(prog.ptr, retprobe, func));
}

/** An iterator (SEC("iter/task") …): attached once, run by each readIter. */
export function attachIter(prog: Program): Link {
  return linkFrom('tracing', prog, `iter ${prog.section}`, () => B.bpf_program__attach_iter(prog.ptr, null));
}

/**
 * Run an iterator once: a new seq_file from its link (bpf_iter_create), read to the end. The kernel
 * runs the program as the reads ask for more, so what it writes is one consistent pass only per
 * object (a task, a map entry), not across the whole walk.
 */
export function readIter(link: Link, chunk = 1 << 16): Buffer {
  const fd = B.bpf_iter_create(link.fd);
  if (fd < 0) throw new BpfError(`${link.description}: bpf_iter_create: ${errnoName(fd)}`, -fd);
  const parts: Buffer[] = [];
  try {
    for (;;) {
      const b = Buffer.allocUnsafe(chunk);
      const n = fs.readSync(fd, b, 0, chunk, null);
      if (n <= 0) break;
      parts.push(n === chunk ? b : b.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return Buffer.concat(parts);
}
