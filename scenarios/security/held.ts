// Connections the workload made before its policy existed. Egress is judged where a destination is
// chosen (connect, sendmsg with an address), so a TCP stream and a connected UDP socket opened
// before the apply keep carrying data to destinations the policy denies: the scenario shows that
// they do, that `heldDeniedConnections` finds them as the hooks would judge them, and that closing
// them (the kernel's socket destroy) ends it — the workload's next sends fail.
import net from 'node:net';
import { closeConnections, describeHeld, heldDeniedConnections, type HeldConnection } from '../../controller/security/existing.ts';
import type { SecurityController } from '../../controller/security/controller.ts';
import { launchBackground, NOBODY, PY_FAST, PYTHON } from './workload.ts';
import { scaledTimeout } from '../../lab/timeouts.ts';

const HOLDER = `import socket, sys
t = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.connect(('127.0.0.1', int(sys.argv[2])))
print('ready', flush=True)
for _ in sys.stdin:
    out = []
    for n, s in (('tcp', t), ('udp', u)):
        try: s.send(b'held'); out.append(n + '=sent')
        except OSError as e: out.append(n + '=' + str(e.errno))
    print(' '.join(out), flush=True)`;

export interface HeldResult {
  /** sends after the apply, before closing: "tcp=sent udp=sent" shows the hooks never saw them */
  before: string;
  /** bytes the TCP listener got from those sends */
  tcpBytesBefore: number;
  found: HeldConnection[];
  closeErrors: string[];
  /** sends after closing: "tcp=103 udp=89" (ECONNABORTED; no longer connected: EDESTADDRREQ) */
  after: string;
  lines: string[];
}

/** start the holder in the workload cgroup (before the policy); `afterApply` runs the rest */
export async function startHeld(cgDir: string, udpPort: number, env: Record<string, string>) {
  let tcpBytes = 0;
  const server = net.createServer((s) => s.on('data', (d) => (tcpBytes += d.length)).on('error', () => {}));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const p = launchBackground(cgDir, [PYTHON, ...PY_FAST, '-c', HOLDER, String(port), String(udpPort)], env, NOBODY, 'pipe');
  const lines: string[] = [];
  let buf = '';
  p.stdout!.on('data', (d: Buffer) => {
    buf += String(d);
    const parts = buf.split('\n');
    buf = parts.pop()!;
    lines.push(...parts);
  });
  const waitLine = async (n: number, what: string) => {
    const deadline = Date.now() + scaledTimeout(10_000);
    while (lines.length < n && Date.now() < deadline && p.exitCode === null) await new Promise((r) => setTimeout(r, 20));
    if (lines.length < n) throw new Error(`the holder did not ${what} (exit ${p.exitCode}, said ${JSON.stringify(lines)})`);
    return lines[n - 1]!;
  };
  const stop = async () => {
    p.kill('SIGKILL');
    await p;
    await new Promise<void>((r) => server.close(() => r()));
  };
  try {
    await waitLine(1, 'connect');
  } catch (e) {
    await stop();
    throw e;
  }
  const round = async (n: number) => {
    p.stdin!.write('go\n');
    return waitLine(n, 'answer');
  };
  return {
    stop,
    async afterApply(controller: SecurityController): Promise<HeldResult> {
      const before = await round(2);
      // the TCP bytes arrive asynchronously: give the listener a moment
      for (let i = 0; i < 50 && before.includes('tcp=sent') && tcpBytes === 0; i++) await new Promise((r) => setTimeout(r, 20));
      const tcpBytesBefore = tcpBytes;
      const found = heldDeniedConnections(controller.store).filter((c) => c.pid === p.pid);
      const closed = await closeConnections(found);
      const closeErrors = [...closed].filter(([, why]) => why).map(([c, why]) => `${describeHeld(c)}: ${why}`);
      const after = await round(3);
      return { before, tcpBytesBefore, found, closeErrors, after, lines: [...lines] };
    },
  };
}
