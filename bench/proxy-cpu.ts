// CPU µs per proxied keep-alive request, measured in the TLS front process only.
//
//   node build/bench/proxy-cpu.js [--requests 40000] [--connections 16] [--modes direct,dispatch,request]
//                                  [--rounds 2] [--load autocannon|wrk] [--seconds 10 (wrk)]
//
// Roles (one script, forked): main orchestrates; `upstream` is a plain HTTP
// server answering 12 bytes; `front` is the https front (the measured process)
// in one mode; `load` runs autocannon (or wrk, a C client that keeps the front
// saturated, so per-wakeup overhead is shared by more requests: lower figures). The front reads process.cpuUsage() after
// a warm-up and after the run; user+system µs / completed requests is the figure.
// Modes:
//   direct   – the front answers 200 itself (TLS + node:http cost, no proxy)
//   dispatch – UpstreamSet.handle (what the gateway uses: Forward over src/proxy/h1-client.ts)
//   request  – undici Pool.request() + pipe, same header rewriting
//   mini     – a minimal keep-alive HTTP/1.1 client: net sockets, one string write per
//              request, Node's own llhttp binding (_http_common HTTPParser) for the response.
//              No retries, timeouts or request bodies: it bounds what replacing undici could save.
//   h1       – src/proxy/h1-client.ts alone (no UpstreamSet/Forward/metrics): `dispatch` minus `h1` is
//              the cost of the request stage's proxy layers, `h1` minus `mini` the client's own.
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { pipeline } from 'node:stream';
import autocannon from 'autocannon';
import { Pool } from 'undici';
import { createCA, issue } from '../src/certs/pki';
import { UpstreamSet } from '../src/proxy';
import { H1Pool } from '../src/proxy/h1-client';
import { forwardRequestHeaders, forwardResponseHeaders, requestHeaderPlan } from '../src/proxy/headers';
import type { UpstreamSnapshot } from '../src/snapshot/types';

type Mode = 'direct' | 'dispatch' | 'request' | 'mini' | 'h1';
type Msg =
  | { type: 'ready'; port: number }
  | { type: 'mark' }
  | { type: 'exit' }
  | { type: 'cpu'; userUs: number; systemUs: number }
  | { type: 'done'; requests: number; non2xx: number; errors: number; rps: number };

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}

const silent = { info: () => {}, warn: () => {}, error: () => {} };

async function upstreamRole(): Promise<void> {
  const body = Buffer.from('hello world\n');
  const s = http.createServer({ keepAliveTimeout: 60_000 }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
    res.end(body);
  });
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  process.send!({ type: 'ready', port: (s.address() as AddressInfo).port } satisfies Msg);
}

async function frontRole(mode: Mode, upstreamPort: number): Promise<void> {
  const ca = createCA('bench CA');
  const leaf = issue({ cn: 'localhost', dns: ['localhost'], ips: ['127.0.0.1'], issuer: ca });
  const up: UpstreamSnapshot = {
    id: 'api',
    scheme: 'http',
    nodes: [{ host: '127.0.0.1', port: upstreamPort, weight: 1 }],
    timeout: { connectMs: 5_000, readMs: 30_000 },
    hash: 'bench',
  };
  const set = new UpstreamSet([up], [], { logger: silent });
  const pool = new Pool(`http://127.0.0.1:${upstreamPort}`, { keepAliveTimeout: 4_000 });
  const plan = requestHeaderPlan(undefined, undefined);
  const direct = Buffer.from('hello world\n');
  const mini = new MiniPool(upstreamPort);
  const h1 = new H1Pool({
    host: '127.0.0.1', port: upstreamPort, authority: `127.0.0.1:${upstreamPort}`, tls: null, connectTimeoutMs: 5_000,
    readTimeoutMs: 30_000, sendTimeoutMs: 0, idleTimeoutMs: 4_000, maxIdle: Infinity, maxConnections: null,
  });

  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const ctx = { remoteAddress: req.socket.remoteAddress ?? '', proto: 'https' as const };
    switch (mode) {
      case 'direct':
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': direct.length });
        res.end(direct);
        return;
      case 'dispatch':
        set.handle(req, res, 'api', ctx);
        return;
      case 'h1': {
        const h = forwardRequestHeaders(req.rawHeaders, plan, ctx);
        h1.dispatch({ method: req.method ?? 'GET', path: req.url ?? '/', headers: h.headers, body: null }, {
          onConnect() {},
          onHeaders(status, headers) {
            res.writeHead(status, forwardResponseHeaders(headers));
            return true;
          },
          onData(chunk) {
            return res.write(chunk);
          },
          onComplete() {
            res.end();
          },
          onError() {
            res.statusCode = 502;
            res.end();
          },
        });
        return;
      }
      case 'mini': {
        const h = forwardRequestHeaders(req.rawHeaders, plan, ctx);
        mini.send(req.method ?? 'GET', req.url ?? '/', h.headers, res);
        return;
      }
      case 'request': {
        const h = forwardRequestHeaders(req.rawHeaders, plan, ctx);
        pool.request({ path: req.url ?? '/', method: req.method as 'GET', headers: h.headers, body: h.hasBody ? req : null }).then(
          (r) => {
            // request() gives parsed headers; flatten them as writeHead wants, minus hop-by-hop
            const raw: string[] = [];
            for (const [k, v] of Object.entries(r.headers)) {
              for (const one of Array.isArray(v) ? v : [v ?? '']) raw.push(k, one);
            }
            res.writeHead(r.statusCode, forwardResponseHeaders(raw));
            pipeline(r.body, res, () => {});
          },
          () => {
            res.statusCode = 502;
            res.end();
          },
        );
        return;
      }
    }
  };
  const server = https.createServer({ cert: leaf.cert, key: leaf.key, keepAliveTimeout: 60_000 }, handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  let mark = process.cpuUsage();
  process.on('message', (m: Msg) => {
    if (m.type === 'exit') process.exit(0); // lets --cpu-prof write its profile
    if (m.type === 'mark') {
      mark = process.cpuUsage();
      process.send!({ type: 'cpu', userUs: 0, systemUs: 0 } satisfies Msg);
    } else if (m.type === 'cpu') {
      const d = process.cpuUsage(mark);
      process.send!({ type: 'cpu', userUs: d.user, systemUs: d.system } satisfies Msg);
    }
  });
  process.send!({ type: 'ready', port: (server.address() as AddressInfo).port } satisfies Msg);
}

// --- the minimal client of mode `mini` ---------------------------------------------
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { HTTPParser } = require('_http_common') as { HTTPParser: ParserCtor };
interface Parser {
  initialize(type: number, resource: object, maxHeaderSize?: number, lenient?: number): void;
  execute(b: Buffer): number | Error;
  [k: number]: unknown;
}
type ParserCtor = (new () => Parser) & {
  RESPONSE: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
};
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'proxy-connection', 'te', 'upgrade']);

class MiniConn {
  readonly socket: Socket;
  readonly parser: Parser;
  res: http.ServerResponse | null = null;
  constructor(port: number, pool: MiniPool) {
    this.socket = connect(port, '127.0.0.1');
    this.socket.setNoDelay(true);
    this.parser = new HTTPParser();
    this.parser.initialize(HTTPParser.RESPONSE, {});
    this.parser[HTTPParser.kOnHeadersComplete] = (
      _maj: number, _min: number, headers: string[], _m: unknown, _u: unknown, status: number,
    ): number => {
      const out: string[] = [];
      for (let i = 0; i < headers.length; i += 2) {
        if (!HOP.has(headers[i]!.toLowerCase())) out.push(headers[i]!, headers[i + 1]!);
      }
      this.res!.writeHead(status, out);
      return 0;
    };
    this.parser[HTTPParser.kOnBody] = (b: Buffer): void => {
      this.res!.write(Buffer.from(b)); // the parser's slice is reused after execute()
    };
    this.parser[HTTPParser.kOnMessageComplete] = (): void => {
      const r = this.res!;
      this.res = null;
      r.end();
      pool.release(this);
    };
    this.socket.on('data', (d: Buffer) => this.parser.execute(d));
  }
}

class MiniPool {
  readonly #idle: MiniConn[] = [];
  readonly #port: number;
  constructor(port: number) {
    this.#port = port;
  }
  send(method: string, path: string, headers: string[], res: http.ServerResponse): void {
    const c = this.#idle.pop() ?? new MiniConn(this.#port, this);
    c.res = res;
    let head = `${method} ${path} HTTP/1.1\r\n`;
    for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
    c.socket.write(head + '\r\n', 'latin1');
  }
  release(c: MiniConn): void {
    this.#idle.push(c);
  }
}

async function loadRole(port: number, amount: number, connections: number, tool: string, seconds: number): Promise<void> {
  if (tool === 'wrk') {
    const { execFileSync } = await import('node:child_process');
    const out = execFileSync('wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, `https://127.0.0.1:${port}/bench`], { encoding: 'utf8' });
    const total = Number(/(\d+) requests in ([\d.]+)s/.exec(out)?.[1] ?? NaN);
    const secs = Number(/requests in ([\d.]+)s/.exec(out)?.[1] ?? NaN);
    const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
    const errors = /Socket errors: (.*)/.exec(out)?.[1] ?? '';
    process.send!({ type: 'done', requests: total, non2xx, errors: errors ? -1 : 0, rps: total / secs } satisfies Msg);
    return;
  }
  const r = await autocannon({ url: `https://127.0.0.1:${port}/bench`, amount, connections, pipelining: 1 });
  process.send!({ type: 'done', requests: r.requests.total, non2xx: r.non2xx, errors: r.errors, rps: r.requests.average } satisfies Msg);
}

function child(args: string[]): ChildProcess {
  return fork(__filename, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
}
async function next<T extends Msg['type']>(cp: ChildProcess, type: T): Promise<Extract<Msg, { type: T }>> {
  for (;;) {
    const [m] = (await once(cp, 'message')) as [Msg];
    if (m.type === type) return m as Extract<Msg, { type: T }>;
  }
}

async function main(): Promise<void> {
  const requests = Number(arg('requests', '40000'));
  const connections = Number(arg('connections', '16'));
  const modes = arg('modes', 'direct,dispatch,request').split(',') as Mode[];
  const rounds = Number(arg('rounds', '2'));
  const tool = arg('load', 'autocannon');
  const seconds = arg('seconds', '10');
  const up = child(['upstream']);
  const upPort = (await next(up, 'ready')).port;
  const results: Record<string, number[]> = {};
  console.log(`# CPU of the https front per keep-alive request; load ${tool}, ${tool === 'wrk' ? `${seconds} s` : `${requests} requests`}, ${connections} connections, node ${process.version}`);
  for (let round = 0; round < rounds; round++) {
    for (const mode of modes) {
      const front = child(['front', mode, String(upPort)]);
      const port = (await next(front, 'ready')).port;
      const warm = child(['load', String(port), String(Math.max(5_000, requests / 4)), String(connections), 'autocannon', '0']);
      await next(warm, 'done');
      front.send({ type: 'mark' } satisfies Msg);
      await next(front, 'cpu');
      const load = child(['load', String(port), String(requests), String(connections), tool, seconds]);
      const done = await next(load, 'done');
      front.send({ type: 'cpu', userUs: 0, systemUs: 0 } satisfies Msg);
      const cpu = await next(front, 'cpu');
      front.kill();
      const per = (cpu.userUs + cpu.systemUs) / done.requests;
      (results[mode] ??= []).push(per);
      console.log(
        `${mode.padEnd(9)} round ${round + 1}: ${per.toFixed(1)} µs/request (user ${(cpu.userUs / done.requests).toFixed(1)}, sys ${(cpu.systemUs / done.requests).toFixed(1)}), ` +
          `${done.requests} requests, non-2xx ${done.non2xx}, errors ${done.errors}, ~${Math.round(done.rps)} req/s`,
      );
    }
  }
  up.kill();
  console.log('# best of rounds (µs CPU per request in the front process):');
  for (const [mode, v] of Object.entries(results)) console.log(`${mode.padEnd(9)} ${Math.min(...v).toFixed(1)}`);
}

const [role, a1, a2, a3, a4, a5] = process.argv.slice(2);
const run =
  role === 'upstream'
    ? upstreamRole()
    : role === 'front'
      ? frontRole(a1 as Mode, Number(a2))
      : role === 'load'
        ? loadRole(Number(a1), Number(a2), Number(a3), String(a4), Number(a5))
        : main();
run.catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
