// write(2) through libc for the ring consumers' hot sinks. fs.writeSync checks its arguments and
// goes through a libuv request on every call: in the line worker it cost ~20 µs more per ~30 KB
// batch than this (90–105 vs 69–79 µs, the two alternated batch by batch in one process at 100k
// events/s, exploratory), ~10% of the TS consumer's CPU per event.
import { C, errno } from './ffi.ts';
import { BpfError, Errno, errnoName } from './errors.ts';

const backoff = new Int32Array(new SharedArrayBuffer(4));

/**
 * Write buf[0, len) to fd, all of it: retried after EINTR and short writes; on EAGAIN (a
 * non-blocking pipe that is full) it waits 1 ms and tries again, so a slow reader slows the
 * writer rather than failing it, as a blocking write would. Other errors throw with the errno.
 */
export function writeAll(fd: number, buf: Uint8Array, len = buf.length): void {
  for (let w = 0; w < len; ) {
    const r = Number(C.write(fd, w === 0 ? buf : buf.subarray(w, len), len - w));
    if (r >= 0) {
      w += r;
      continue;
    }
    const e = errno();
    if (e === Errno.EINTR) continue;
    if (e === Errno.EAGAIN) {
      Atomics.wait(backoff, 0, 0, 1);
      continue;
    }
    throw new BpfError(`write to fd ${fd}: ${errnoName(e)}`, e, e === Errno.EPIPE ? 'the reading end was closed' : undefined);
  }
}
