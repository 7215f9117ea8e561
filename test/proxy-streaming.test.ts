// Big bodies both ways stream through with bounded memory; a client that stops
// reading stalls the upstream instead of filling the gateway's heap.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import v8 from 'node:v8';
import vm from 'node:vm';
import { after, before, describe, it } from 'node:test';
import { UpstreamSet } from '../src/proxy';
import { closeServer, listen, memoryLogger, pki, startFront, until, upstream } from './helpers/proxy-fixture';

const MiB = 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 'z');

/** Bytes as a stream of 64 KiB chunks, never one buffer of the whole size. */
function source(total: number): Readable {
  let left = total;
  return new Readable({
    read() {
      if (left <= 0) return void this.push(null);
      const n = Math.min(left, CHUNK.length);
      left -= n;
      this.push(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n));
    },
  });
}

// Garbage buffers from socket reads pile up to V8's external-memory GC trigger
// (tens of MiB even for a plain http upload with no proxy, measured): RSS sampled
// without collecting says more about the GC than about buffering. So the sampler
// forces a full GC before each reading: what remains is what someone holds.
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/** Peak growth of RSS and of live memory (heap + ArrayBuffers) while `fn` runs. */
async function peakGrowth<T>(fn: () => Promise<T>): Promise<{ value: T; rss: number; live: number }> {
  gc();
  const m0 = process.memoryUsage();
  const live0 = m0.heapUsed + m0.arrayBuffers;
  let rss = 0;
  let live = 0;
  const sample = (): void => {
    gc();
    const m = process.memoryUsage();
    rss = Math.max(rss, m.rss - m0.rss);
    live = Math.max(live, m.heapUsed + m.arrayBuffers - live0);
  };
  const t = setInterval(sample, 20);
  try {
    const value = await fn();
    return { value, rss, live };
  } finally {
    clearInterval(t);
  }
}

const fmt = (n: number): string => `${(n / MiB).toFixed(1)} MiB`;

describe('proxy: streaming bodies', () => {
  const servers: Array<http.Server | https.Server> = [];
  let set: UpstreamSet;
  let front: string;
  const received = new Map<string, number>();
  let slowUpstream: { written: number; res: http.ServerResponse | null; closed: boolean } = { written: 0, res: null, closed: false };

  before(async () => {
    const up = await listen(
      http.createServer((req, res) => {
        const url = new URL(req.url ?? '/', 'http://x');
        if (url.pathname === '/upload') {
          let n = 0;
          req.on('data', (c: Buffer) => (n += c.length));
          req.on('end', () => {
            received.set(String(url.searchParams.get('id')), n);
            res.end(String(n));
          });
          return;
        }
        // /download?size=N[&slow=1]: N bytes, written with backpressure
        const size = Number(url.searchParams.get('size'));
        const track = url.searchParams.get('track') === '1';
        if (track) slowUpstream = { written: 0, res, closed: false };
        res.on('close', () => {
          if (track) slowUpstream.closed = true;
        });
        res.writeHead(200, url.searchParams.get('chunked') === '1' ? {} : { 'content-length': size });
        let left = size;
        const pump = (): void => {
          while (left > 0) {
            const n = Math.min(left, CHUNK.length);
            left -= n;
            if (track) slowUpstream.written += n;
            if (!res.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) return void res.once('drain', pump);
          }
          res.end();
        };
        pump();
      }),
    );
    servers.push(up.server);
    set = new UpstreamSet([upstream({ id: 'api', nodes: [{ host: '127.0.0.1', port: up.port, weight: 1 }] })], [], { logger: memoryLogger() });
    const f = await startFront(set);
    servers.push(f.server);
    front = f.url;
  });

  after(async () => {
    await set.close();
    await Promise.all(servers.map(closeServer));
  });

  const agent = new https.Agent({ ca: pki().frontCa.cert, servername: 'localhost', keepAlive: true });
  after(() => agent.destroy());

  async function upload(id: string, size: number, chunked: boolean): Promise<string> {
    const req = https.request(`${front}/upload?id=${id}`, {
      method: 'POST',
      agent,
      headers: chunked ? {} : { 'content-length': String(size) },
    });
    source(size).pipe(req);
    const [res] = (await once(req, 'response')) as [http.IncomingMessage];
    let body = '';
    for await (const c of res) body += String(c);
    return body;
  }

  async function download(query: string): Promise<number> {
    const req = https.get(`${front}/download?${query}`, { agent });
    const [res] = (await once(req, 'response')) as [http.IncomingMessage];
    assert.equal(res.statusCode, 200);
    let n = 0;
    for await (const c of res) n += (c as Buffer).length;
    return n;
  }

  // The first transfers under the GC-ing sampler grow RSS by ~20 MiB (code, heap
  // pages, GC work space: measured, whatever the body size): not what we assert on.
  it('warms up', async () => {
    assert.equal((await peakGrowth(() => upload('warm', MiB, false))).value, String(MiB));
    assert.equal((await peakGrowth(() => download(`size=${MiB}`))).value, MiB);
  });

  for (const [label, size] of [
    ['1 MiB', 1 * MiB],
    ['50 MiB', 50 * MiB],
  ] as const) {
    it(`uploads ${label} (content-length and chunked) with RSS growth well under the body size`, async (t) => {
      for (const chunked of [false, true]) {
        const id = `${label}-${chunked}`;
        const m = await peakGrowth(() => upload(id, size, chunked));
        assert.equal(m.value, String(size));
        assert.equal(received.get(id), size);
        t.diagnostic(`upload ${label} chunked=${chunked}: live +${fmt(m.live)}, RSS +${fmt(m.rss)}`);
        assert.ok(m.live < 12 * MiB, `live memory grew ${fmt(m.live)} for a ${label} upload`);
        assert.ok(m.rss < 24 * MiB, `RSS grew ${fmt(m.rss)} for a ${label} upload`);
      }
    });

    it(`downloads ${label} (content-length and chunked) with RSS growth well under the body size`, async (t) => {
      for (const chunked of [false, true]) {
        const m = await peakGrowth(() => download(`size=${size}&chunked=${chunked ? 1 : 0}`));
        assert.equal(m.value, size);
        t.diagnostic(`download ${label} chunked=${chunked}: live +${fmt(m.live)}, RSS +${fmt(m.rss)}`);
        assert.ok(m.live < 12 * MiB, `live memory grew ${fmt(m.live)} for a ${label} download`);
        assert.ok(m.rss < 24 * MiB, `RSS grew ${fmt(m.rss)} for a ${label} download`);
      }
    });
  }

  it('a client that stops reading stalls the upstream: bounded bytes in flight, bounded RSS, then all of it arrives', async (t) => {
    const size = 256 * MiB;
    gc();
    const base = process.memoryUsage();
    const req = https.get(`${front}/download?size=${size}&track=1`, { agent });
    const [res] = (await once(req, 'response')) as [http.IncomingMessage];
    res.pause();
    // Stalled = the upstream's writes are blocked (needs drain) and its count no longer moves.
    let last = -1;
    let still = 0;
    await until(
      () => {
        const blocked = slowUpstream.res?.writableNeedDrain === true && slowUpstream.written === last;
        still = blocked ? still + 1 : 0;
        last = slowUpstream.written;
        return still >= 20;
      },
      'upstream writes to block',
      15_000,
      25,
    );
    const inFlight = slowUpstream.written;
    gc();
    const m = process.memoryUsage();
    const live = m.heapUsed + m.arrayBuffers - (base.heapUsed + base.arrayBuffers);
    t.diagnostic(`stalled: upstream wrote ${fmt(inFlight)}, live +${fmt(live)}, RSS +${fmt(m.rss - base.rss)}`);
    // Most of what the upstream got out sits in kernel socket buffers (loopback
    // autotuning: a few MiB per hop), not in this process.
    assert.ok(inFlight < 48 * MiB, `upstream got ${fmt(inFlight)} out of 256 MiB while the client read nothing`);
    assert.ok(live < 16 * MiB, `live memory grew ${fmt(live)} while stalled`);
    assert.ok(m.rss - base.rss < 64 * MiB, `RSS grew ${fmt(m.rss - base.rss)} while stalled`);
    let n = 0;
    for await (const c of res) n += (c as Buffer).length;
    assert.equal(n, size);
  });

  it('a client that disconnects mid-download aborts the upstream request', async () => {
    const req = https.get(`${front}/download?size=${256 * MiB}&track=1`, { agent: false, ca: pki().frontCa.cert, servername: 'localhost' });
    const [res] = (await once(req, 'response')) as [http.IncomingMessage];
    await once(res, 'data');
    req.destroy();
    await until(() => slowUpstream.closed, 'upstream response to be closed');
    assert.ok(slowUpstream.written < 256 * MiB);
  });
});
