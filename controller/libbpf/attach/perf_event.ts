// perf_event programs: one perf event per CPU (software or hardware), each with the program
// attached through a bpf_link that owns the event's fd.
import { archFacts } from '../../../common/arch.ts';
import { B, C, errno } from '../ffi.ts';
import { AttachError, AttachInputError, Errno } from '../errors.ts';
import type { Link } from '../link.ts';
import type { Program } from '../object.ts';
import { linkFrom, requireLoaded } from './internal.ts';

const PERF_FLAG_FD_CLOEXEC = 8;
const PERF_ATTR_FREQ = 1n << 10n;
// the size we tell the kernel (PERF_ATTR_SIZE_VER7): older kernels accept it, the tail is zero
const PERF_ATTR_SIZE = 128;

export interface PerfEventAttr {
  /** PERF_TYPE_* (0 hardware, 1 software …) */
  type: number;
  /** PERF_COUNT_* of that type */
  config: number;
  /** sample every n events … */
  samplePeriod?: number;
  /** … or n times a second (takes precedence) */
  freq?: number;
}

/** Attach to an already opened perf event fd (the link owns it afterwards). */
export function attachPerfEvent(prog: Program, pfd: number): Link {
  if (!Number.isInteger(pfd) || pfd < 0) throw new AttachInputError('perf_event', `perf event fd ${pfd} is not a file descriptor`, undefined, Errno.EBADF);
  return linkFrom('perf_event', prog, `perf_event fd ${pfd}`, () => B.bpf_program__attach_perf_event(prog.ptr, pfd));
}

/** Sample on every CPU: a perf event per online CPU, each with this program attached. */
export function attachPerfEventAllCpus(prog: Program, attr: PerfEventAttr): Link[] {
  const period = attr.freq ?? attr.samplePeriod ?? 1;
  if (!Number.isInteger(period) || period <= 0) throw new AttachInputError('perf_event', `sampling ${attr.freq !== undefined ? 'frequency' : 'period'} ${period} is not a positive integer`);
  requireLoaded('perf_event', prog);
  const nr = archFacts().syscall.perf_event_open;
  const a = {
    type: attr.type, size: PERF_ATTR_SIZE, config: attr.config, sample_period: period,
    sample_type: 0, read_format: 0, flags: attr.freq ? PERF_ATTR_FREQ : 0n, wakeup_events: 0, bp_type: 0, config1: 0, config2: 0,
    branch_sample_type: 0, sample_regs_user: 0, sample_stack_user: 0, clockid: 0, sample_regs_intr: 0, aux_watermark: 0,
    sample_max_stack: 0, _reserved_2: 0, aux_sample_size: 0, _reserved_3: 0, sig_data: 0, config3: 0,
  };
  const links: Link[] = [];
  try {
    for (let cpu = 0; cpu < B.libbpf_num_possible_cpus(); cpu++) {
      const pfd = Number(C.syscall_perf_event_open(nr, a, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC));
      if (pfd < 0) {
        const e = errno();
        if (e === Errno.ENODEV) continue; // a possible CPU that is offline
        throw new AttachError('perf_event', prog.name, `perf_event_open on cpu ${cpu}`, e);
      }
      links.push(attachPerfEvent(prog, pfd));
    }
  } catch (err) {
    links.forEach((l) => l.close());
    throw err;
  }
  return links;
}
