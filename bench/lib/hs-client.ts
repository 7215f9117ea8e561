// A TLS handshake client in its own process (pinned to the client core): sequential
// connections on C parallel loops, each doing handshake + one `Connection: close` GET.
// Used for resumed handshakes (wrk resumes only every other reconnect) and as the handshake-latency
// probe beside wrk (wrk's latency starts after the handshake). Bounded by count and time.
import { connect, type TLSSocket } from 'node:tls';
import { readFileSync } from 'node:fs';
import { cdfPoints, summarize, type Summary } from './stats';

export interface HsClientOptions {
  port: number;
  servername: string;
  ca: string;
  protocol: 'TLSv1.2' | 'TLSv1.3';
  count: number;
  concurrency: number;
  durationMs: number;
  resume: boolean;
  /** Names taken in turn (SNI and Host), instead of `servername` alone. */
  servernames?: string[];
}

export interface HsClientResult {
  completed: number;
  resumed: number;
  errors: Record<string, number>;
  /** TCP connect + TLS handshake, ms. */
  handshakeMs: Summary;
  /** The handshake times' distribution (cdfPoints), for the HTML report's CDF. */
  handshakeCdf: number[];
  wallMs: number;
}

function once(
  o: HsClientOptions,
  ca: Buffer,
  session: Buffer | undefined,
  servername = o.servername,
): Promise<{ ms: number; resumed: boolean; session?: Buffer }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let ms = 0;
    let resumed = false;
    let latest: Buffer | undefined;
    const s: TLSSocket = connect({
      host: '127.0.0.1',
      port: o.port,
      servername,
      ca,
      minVersion: o.protocol,
      maxVersion: o.protocol,
      session,
    });
    s.setTimeout(10_000, () => s.destroy(new Error('ETIMEDOUT')));
    s.on('session', (b: Buffer) => (latest = b));
    s.once('secureConnect', () => {
      ms = performance.now() - t0;
      resumed = s.isSessionReused(); // false once the socket is closed: read it now
      s.write(`GET / HTTP/1.1\r\nHost: ${servername}\r\nConnection: close\r\n\r\n`);
    });
    let head = '';
    s.on('data', (d: Buffer) => {
      if (head.length < 16) head += d.toString('latin1');
    });
    s.on('error', reject);
    s.on('close', () => {
      if (!head.startsWith('HTTP/1.1 200')) return reject(new Error(head ? `status ${head.slice(9, 12)}` : 'no response'));
      resolve({ ms, resumed, session: latest });
    });
  });
}

export async function runHsClient(o: HsClientOptions): Promise<HsClientResult> {
  const ca = readFileSync(o.ca);
  const samples: number[] = [];
  const errors: Record<string, number> = {};
  let resumed = 0;
  let started = 0;
  const t0 = performance.now();
  const deadline = t0 + o.durationMs;
  const loop = async (): Promise<void> => {
    let session: Buffer | undefined;
    while (started < o.count && performance.now() < deadline) {
      const name = o.servernames?.length ? o.servernames[started % o.servernames.length] : o.servername;
      started++;
      try {
        const r = await once(o, ca, o.resume ? session : undefined, name);
        samples.push(r.ms);
        if (r.resumed) resumed++;
        if (r.session) session = r.session;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
        errors[code] = (errors[code] ?? 0) + 1;
        session = undefined;
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, loop));
  const wallMs = performance.now() - t0;
  const handshakeMs = summarize(samples);
  return { completed: samples.length, resumed, errors, handshakeMs, handshakeCdf: cdfPoints(samples), wallMs };
}

if (require.main === module) {
  const o = JSON.parse(process.argv[2]!) as HsClientOptions;
  runHsClient(o).then(
    (r) => process.stdout.write(JSON.stringify(r) + '\n'),
    (err: unknown) => {
      process.stderr.write(String(err) + '\n');
      process.exit(1);
    },
  );
}
