// Binaries by identity (the kernel's dev_t + inode of the file exec runs), and "any shell"
// resolved to the real files on this system. A path is only a way to find an inode: symlinks,
// hard links and applet links of busybox all end at the same (dev, ino).
import fs from 'node:fs';
import path from 'node:path';

export interface FileId {
  path: string;
  dev: bigint; // kernel encoding: MAJOR << 20 | MINOR (what inode->i_sb->s_dev holds)
  ino: bigint;
}

/** glibc's user-space dev_t (stat st_dev) → the kernel's internal dev_t */
export function kernelDev(userDev: bigint): bigint {
  const major = ((userDev >> 8n) & 0xfffn) | ((userDev >> 32n) & ~0xfffn);
  const minor = (userDev & 0xffn) | ((userDev >> 12n) & ~0xffn);
  return (major << 20n) | minor;
}

export function fileId(p: string): FileId {
  const real = fs.realpathSync(p);
  const st = fs.statSync(real, { bigint: true });
  // Node's bigint stats are signed 64-bit: an inode number past 2^63 (9p, some FUSE and network
  // file systems) came back negative, which is not the kernel's (unsigned) i_ino in a map key
  return { path: real, dev: kernelDev(BigInt.asUintN(64, st.dev)), ino: BigInt.asUintN(64, st.ino) };
}

const SHELL_NAMES = ['sh', 'bash', 'rbash', 'dash', 'ash', 'zsh', 'ksh', 'ksh93', 'mksh', 'pdksh', 'lksh', 'yash', 'posh', 'csh', 'tcsh', 'fish', 'busybox', 'toybox'];
const BIN_DIRS = ['/bin', '/usr/bin', '/sbin', '/usr/sbin', '/usr/local/bin', '/usr/local/sbin'];

/**
 * Every shell binary on this system, deduplicated by inode. busybox/toybox count as shells: they
 * run `sh` as an applet whatever name they are started by.
 */
export function resolveShells(): FileId[] {
  const candidates = new Set<string>();
  for (const d of BIN_DIRS) for (const n of SHELL_NAMES) candidates.add(path.join(d, n));
  try {
    for (const l of fs.readFileSync('/etc/shells', 'utf8').split('\n')) {
      const s = l.trim();
      // /etc/shells also lists things like tmux; only names that are shells by our list count
      if (s.startsWith('/') && SHELL_NAMES.includes(path.basename(s))) candidates.add(s);
    }
  } catch {
    /* no /etc/shells */
  }
  const seen = new Map<string, FileId>();
  for (const c of candidates) {
    try {
      const id = fileId(c);
      if (!fs.statSync(id.path).isFile()) continue;
      seen.set(`${id.dev}:${id.ino}`, id);
    } catch {
      /* absent */
    }
  }
  return [...seen.values()].sort((a, b) => a.path.localeCompare(b.path));
}
