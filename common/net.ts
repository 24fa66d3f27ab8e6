// Loopback ports for the services a scenario or test starts (Jaeger, Zipkin, the traced chain,
// PostgreSQL): the kernel picks one that is free now; the caller binds it right after.
import net from 'node:net';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}
