// Pull the ELF vmlinux out of a bzImage. Under TCG the guest's own decompressor costs ~3 s on
// xz-compressed kernels (5.10, 6.1); QEMU boots an ELF vmlinux through its PVH entry with no
// decompression at all (every Debian kernel has CONFIG_PVH=y).
import { closeSync, openSync, readSync } from 'node:fs';
import { readFile, writeFile, rename } from 'node:fs/promises';
import { run } from './exec.ts';
import { LabError } from '../../common/errors.ts';

/** The bzImage setup header carries the payload's offset and length, so no magic scanning is needed. */
export function bzImagePayload(img: Buffer): { data: Buffer; format: 'xz' | 'zstd' | 'gzip' | 'lz4' | 'lzma' | 'bzip2' | 'lzo' | 'unknown' } {
  if (img.readUInt32LE(0x202) !== 0x53726448) throw new LabError('not a bzImage (no HdrS signature)');
  const setupSects = img[0x1f1] || 4;
  const pm = (setupSects + 1) * 512;
  const off = img.readUInt32LE(0x248);
  const len = img.readUInt32LE(0x24c);
  const data = img.subarray(pm + off, pm + off + len);
  const m = (sig: number[]) => sig.every((b, i) => data[i] === b);
  const format = m([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]) ? 'xz'
    : m([0x28, 0xb5, 0x2f, 0xfd]) ? 'zstd'
    : m([0x1f, 0x8b]) ? 'gzip'
    : m([0x02, 0x21, 0x4c, 0x18]) ? 'lz4'
    : m([0x5d, 0x00, 0x00]) ? 'lzma'
    : m([0x42, 0x5a, 0x68]) ? 'bzip2'
    : m([0x89, 0x4c, 0x5a, 0x4f]) ? 'lzo' : 'unknown';
  return { data, format };
}

/**
 * Why a file is no kernel QEMU can boot, or undefined: a bzImage (the "HdrS" boot header) or an
 * ELF vmlinux (booted through PVH). `vm fetch /etc/passwd` once answered "custom (unknown)", exit 0.
 */
export function kernelImageProblem(head: Buffer): string | undefined {
  // an ELF: a 64-bit x86-64 executable loaded at kernel addresses, as a vmlinux is (a program is
  // an ELF executable too: node's loads at 0x400000)
  if (head.length >= 4 && head.readUInt32BE(0) === 0x7f454c46) return isVmlinuxElf(head) ? undefined : 'an ELF file, but no x86-64 vmlinux (no part of it loads at kernel addresses)';
  if (head.length >= 0x206 && head.readUInt32LE(0x202) === 0x53726448) return undefined;
  return head.length < 0x206 ? `${head.length} bytes: too short for a kernel image` : 'not a kernel image (no bzImage boot header, not an ELF vmlinux)';
}

function isVmlinuxElf(h: Buffer): boolean {
  if (h.length < 64 || h[4] !== 2 || h.readUInt16LE(16) !== 2 || h.readUInt16LE(18) !== 0x3e) return false;
  const phoff = Number(h.readBigUInt64LE(32));
  const size = h.readUInt16LE(54);
  const n = h.readUInt16LE(56);
  for (let i = 0; i < n; i++) {
    const at = phoff + i * size;
    if (at + 24 > h.length) break;
    // a PT_LOAD whose virtual address is in the kernel's half (0xffffffff80000000 and up)
    if (h.readUInt32LE(at) === 1 && h.readBigUInt64LE(at + 16) >= 0xffffffff80000000n) return true;
  }
  return false;
}

/** the first bytes of a file, where a kernel image's headers are */
export function readHead(file: string, n = 0x400): Buffer {
  const fd = openSync(file, 'r');
  try {
    const b = Buffer.alloc(n);
    return b.subarray(0, readSync(fd, b, 0, n, 0));
  } finally {
    closeSync(fd);
  }
}

/** Kernel release string from the bzImage header (what uname -r will say). */
export function bzImageRelease(img: Buffer): string | undefined {
  if (img.length < 0x210 || img.readUInt32LE(0x202) !== 0x53726448) return undefined;
  const ptr = img.readUInt16LE(0x20e);
  if (!ptr) return undefined;
  const s = img.subarray(0x200 + ptr, 0x200 + ptr + 256).toString('latin1');
  return s.split(/[\s\0]/)[0] || undefined;
}

const TOOLS: Record<string, string[]> = { xz: ['xz', '-dc', '--single-stream'], zstd: ['zstd', '-dcq'], gzip: ['gzip', '-dc'], lzma: ['xz', '-dc', '--format=lzma'], bzip2: ['bzip2', '-dc'] };

/** Write the ELF vmlinux next to the cache entry; returns false when this format can't be handled (boot the bzImage then). */
export async function extractVmlinux(bzImage: string, dest: string): Promise<boolean> {
  const img = await readFile(bzImage);
  const { data, format } = bzImagePayload(img);
  const tool = TOOLS[format];
  if (!tool) return false;
  const r = await run(tool[0]!, tool.slice(1), { input: data, reject: false });
  const elf = r.stdout;
  // gzip/zstd exit non-zero on the few bytes of trailing padding; the ELF magic is what counts.
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46) return false;
  await writeFile(`${dest}.tmp${process.pid}`, elf);
  await rename(`${dest}.tmp${process.pid}`, dest);
  return true;
}
