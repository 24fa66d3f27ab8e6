// A libc function for the few calls Node has no API for (prctl, dup2), through koffi (the
// binding's FFI, already a dependency). Loaded on first use: the CLI's common paths never pay for it.
import { createRequire } from 'node:module';

let libc: import('koffi').LibraryHandle | undefined;

/** the function a C declaration names, e.g. 'int dup2(int oldfd, int newfd)'; throws where there is no libc */
export function libcFunc<F extends (...a: never[]) => unknown>(decl: string): F {
  libc ??= (createRequire(import.meta.url)('koffi') as typeof import('koffi')).load('libc.so.6');
  return libc.func(decl) as unknown as F;
}
