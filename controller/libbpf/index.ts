// The TypeScript binding to the system libbpf. Knows libbpf and BTF, nothing of the lab.
export { BpfObject, Program, enableStats, progInfo, XdpFlags, type OpenOptions, type LoadOptions, type TestRunResult, type ProgInfo } from './object.ts';
export { BpfMap, MapType, UpdateFlags, mapInfo, rawCodec } from './map.ts';
export { Link } from './link.ts';
export { RingBuffer, type RingBufferOptions } from './ringbuf.ts';
export { Btf, Kind, type Codec, type BtfType } from './btf.ts';
export { BpfError, VerifierError, errnoName, hintFor } from './errors.ts';
export { closeAll, liveCount, deferSignalsToCaller } from './lifecycle.ts';
export { captureLibbpf } from './log.ts';
export { B as libbpf, koffi } from './ffi.ts';
