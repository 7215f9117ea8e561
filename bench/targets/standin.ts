// Stand-in for tlsgate: a node:https cluster with tlsgate's CLI, config subset and
// admin contract, so the harness (including rotation and scale) runs before the real
// gateway lands, and so "plain node https" has a column of its own.
// Not a product: no validation beyond what the bench needs.
import cluster from 'node:cluster';
import { constants, createHash } from 'node:crypto';
import { readFileSync, statSync, watch } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server } from 'node:https';
import { dirname, isAbsolute, resolve } from 'node:path';
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import { Pool } from 'undici';
import { parse } from 'yaml';

interface SslIn {
  id: string;
  snis: string[];
  cert: string;
  key: string;
  ssl_protocols?: string[];
}
interface ConfigIn {
  workers: number | 'auto';
  admin: { listen: string; api_keys: string[] };
  listeners: Array<{ listen: string }>;
  ssls: SslIn[];
  upstreams: Array<{ id: string; nodes: Array<{ host: string; port: number }> }>;
  routes: Array<{ id: string; paths: string[]; upstream?: string; respond?: { status: number; body: string } }>;
}
interface Snapshot {
  version: number;
  listen: string;
  tickets: boolean;
  keys: string[];
  ssls: Array<{ snis: string[]; cert: string; key: number; protocols: string[] }>;
  routes: Array<{ path: string; upstream?: string; status?: number; body?: string }>;
  upstreams: Record<string, string>;
}
type ToWorker = { type: 'snapshot'; snapshot: Snapshot };
type ToPrimary = { type: 'ack'; version: number };

const split = (hostPort: string): [string, number] => {
  const i = hostPort.lastIndexOf(':');
  return [hostPort.slice(0, i), Number(hostPort.slice(i + 1))];
};

function primary(configFile: string): void {
  const dir = dirname(configFile);
  const fileCache = new Map<string, { mtimeMs: number; size: number; text: string }>();
  const readRef = (ref: string): string => {
    if (!ref.startsWith('$file://')) return ref;
    const p = ref.slice('$file://'.length);
    const abs = isAbsolute(p) ? p : resolve(dir, p);
    const st = statSync(abs);
    const hit = fileCache.get(abs);
    if (hit && hit.mtimeMs === st.mtimeMs && hit.size === st.size) return hit.text;
    const text = readFileSync(abs, 'utf8');
    fileCache.set(abs, { mtimeMs: st.mtimeMs, size: st.size, text });
    return text;
  };
  let version = 0;
  let configHash = '';
  let snapshot: Snapshot | undefined;
  const acked = new Map<number, number>(); // worker pid → version

  const compile = (text: string): Snapshot => {
    const t0 = performance.now();
    const c = parse(text) as ConfigIn;
    const keyIndex = new Map<string, number>();
    const keys: string[] = [];
    const ssls = c.ssls.map((s) => {
      const key = readRef(s.key);
      let k = keyIndex.get(key);
      if (k === undefined) keyIndex.set(key, (k = keys.push(key) - 1));
      return { snis: s.snis, cert: readRef(s.cert), key: k, protocols: s.ssl_protocols ?? ['TLSv1.2', 'TLSv1.3'] };
    });
    const upstreams: Record<string, string> = {};
    for (const u of c.upstreams) upstreams[u.id] = `http://${u.nodes[0]!.host}:${u.nodes[0]!.port}`;
    const routes = c.routes
      .flatMap((r) => r.paths.map((path) => ({ path, upstream: r.upstream, status: r.respond?.status, body: r.respond?.body })))
      .sort((a, b) => b.path.length - a.path.length);
    const s: Snapshot = { version: version + 1, listen: c.listeners[0]!.listen, tickets: process.env.STANDIN_TICKETS !== '0', keys, ssls, routes, upstreams };
    log({ msg: 'snapshot compiled', version: s.version, ssls: ssls.length, compile_ms: performance.now() - t0 });
    return s;
  };
  const load = (): void => {
    let text: string;
    try {
      text = readFileSync(configFile, 'utf8');
    } catch {
      return;
    }
    const h = createHash('sha256').update(text).digest('hex');
    if (h === configHash) return;
    try {
      snapshot = compile(text);
    } catch (err) {
      log({ level: 40, msg: 'config refused', err: String(err) });
      return;
    }
    configHash = h;
    version = snapshot.version;
    for (const w of Object.values(cluster.workers ?? {})) w?.send({ type: 'snapshot', snapshot } satisfies ToWorker);
  };

  load();
  const config = parse(readFileSync(configFile, 'utf8')) as ConfigIn;
  const n = config.workers === 'auto' ? 2 : config.workers;
  // Workers accept on their own (SO_REUSEPORT-less shared handle): round-robin would make
  // the primary touch every connection and bill its CPU to each handshake.
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  cluster.setupPrimary({ serialization: 'advanced' });
  const fork = (): void => {
    const w = cluster.fork();
    w.on('online', () => snapshot && w.send({ type: 'snapshot', snapshot } satisfies ToWorker));
    w.on('message', (m: ToPrimary) => {
      if (m.type === 'ack' && w.process.pid) acked.set(w.process.pid, m.version);
    });
    w.on('exit', () => {
      if (w.process.pid) acked.delete(w.process.pid);
      if (!shuttingDown) fork();
    });
  };
  let shuttingDown = false;
  for (let i = 0; i < n; i++) fork();

  let timer: NodeJS.Timeout | undefined;
  watch(dir, () => {
    clearTimeout(timer);
    timer = setTimeout(load, 5);
  });

  const [ahost, aport] = split(config.admin.listen);
  const admin = createHttpServer((req, res) => {
    if (req.url !== '/v1/status' || !config.admin.api_keys.includes(String(req.headers['x-api-key']))) {
      res.writeHead(req.url === '/v1/status' ? 401 : 404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ version, workers: [...acked].map(([pid, v]) => ({ pid, version: v })) }));
  });
  admin.listen(aport, ahost);
  process.on('SIGTERM', () => {
    shuttingDown = true;
    admin.close();
    for (const w of Object.values(cluster.workers ?? {})) w?.kill('SIGTERM');
    setTimeout(() => process.exit(0), 200).unref();
    cluster.on('exit', () => Object.keys(cluster.workers ?? {}).length === 0 && process.exit(0));
  });
}

function log(o: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify({ level: 30, time: Date.now(), pid: process.pid, ...o }) + '\n');
}

function worker(): void {
  interface Entry {
    cert: string;
    key: number;
    protocols: string[];
    ctx?: SecureContext;
  }
  let snap: Snapshot | undefined;
  let map = new Map<string, Entry>();
  let server: Server | undefined;
  const pools = new Map<string, Pool>();
  const contextOptions = (e: Entry, s: Snapshot): SecureContextOptions => ({
    cert: e.cert,
    key: s.keys[e.key],
    minVersion: e.protocols.includes('TLSv1.2') ? 'TLSv1.2' : 'TLSv1.3',
    maxVersion: e.protocols.includes('TLSv1.3') ? 'TLSv1.3' : 'TLSv1.2',
    secureOptions: s.tickets ? 0 : constants.SSL_OP_NO_TICKET,
  });
  const contextFor = (name: string): SecureContext | undefined => {
    const e = map.get(name.toLowerCase());
    if (!e || !snap) return undefined;
    // Built on first use and kept: ~1 ms and ~24 KB each, so 10k eagerly is 10 s.
    e.ctx ??= createSecureContext(contextOptions(e, snap));
    return e.ctx;
  };

  process.on('message', (m: ToWorker) => {
    if (m.type !== 'snapshot') return;
    const s = m.snapshot;
    const next = new Map<string, Entry>();
    const old = map;
    for (const ssl of s.ssls) {
      for (const sni of ssl.snis) {
        const prev = old.get(sni);
        // Unchanged certificate: keep its context (rotation touches one object, not all).
        const reuse = prev && prev.cert === ssl.cert && snap && snap.keys[prev.key] === s.keys[ssl.key] ? prev.ctx : undefined;
        next.set(sni, { cert: ssl.cert, key: ssl.key, protocols: ssl.protocols, ctx: reuse });
      }
    }
    snap = s;
    map = next;
    if (!server) {
      const first = s.ssls[0]!;
      const base = contextOptions({ cert: first.cert, key: first.key, protocols: first.protocols }, s);
      server = createHttpsServer(
        {
          ...base,
          SNICallback(servername, cb) {
            cb(null, contextFor(servername) ?? contextFor(s.ssls[0]!.snis[0]!));
          },
        },
        (req, res) => {
          const url = req.url ?? '/';
          const route = snap!.routes.find((r) => url.startsWith(r.path));
          if (!route) {
            res.writeHead(404).end();
          } else if (route.upstream) {
            const origin = snap!.upstreams[route.upstream]!;
            let pool = pools.get(origin);
            if (!pool) pools.set(origin, (pool = new Pool(origin, { connections: 64, pipelining: 1 })));
            pool.request({ method: 'GET', path: url }).then(
              async (up) => {
                res.writeHead(up.statusCode, { 'content-type': String(up.headers['content-type'] ?? 'text/plain') });
                for await (const chunk of up.body) res.write(chunk);
                res.end();
              },
              () => res.writeHead(502).end(),
            );
          } else {
            res.writeHead(route.status ?? 200, { 'content-type': 'text/plain' }).end(route.body ?? '');
          }
        },
      );
      server.keepAliveTimeout = 75_000; // 75 seconds, as the peers
      const [host, port] = split(s.listen);
      server.listen(port, host, () => process.send!({ type: 'ack', version: s.version } satisfies ToPrimary));
    } else {
      process.send!({ type: 'ack', version: s.version } satisfies ToPrimary);
    }
  });
  process.on('SIGTERM', () => {
    server?.close();
    server?.closeAllConnections();
    setTimeout(() => process.exit(0), 100).unref();
  });
}

if (cluster.isPrimary) {
  const i = process.argv.indexOf('--config');
  if (process.argv[2] !== 'start' || i < 0 || !process.argv[i + 1]) {
    process.stderr.write('usage: standin start --config FILE\n');
    process.exit(2);
  }
  primary(resolve(process.argv[i + 1]!));
} else {
  worker();
}
