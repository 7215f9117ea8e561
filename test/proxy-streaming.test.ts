// Big bodies both ways stream through: bytes reach the other side before the sender
// has finished (never buffered whole); a client that stops reading stalls the upstream
// instead of filling the gateway's heap. Memory per streamed MiB is a figure, not a
// test: `npm run bench -- --only streaming` reports it (on 2 shared cores RSS and heap
// growth depend on the GC's timing, and thresholds on them flaked here).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { UpstreamSet } from '../src/proxy';
import { closeServer, listen, memoryLogger, pki, startFront, until, upstream } from './helpers/proxy-fixture';

const MiB = 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 'z');

/** Bytes the current upload's client has produced so far. */
let clientSent = 0;

/** Bytes as a stream of 64 KiB chunks, never one buffer of the whole size. */
function source(total: number): Readable {
  let left = total;
  clientSent = 0;
  return new Readable({
    read() {
      if (left <= 0) return void this.push(null);
      const n = Math.min(left, CHUNK.length);
      left -= n;
      clientSent += n;
      this.push(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n));
    },
  });
}

const fmt = (n: number): string => `${(n / MiB).toFixed(1)} MiB`;

describe('proxy: streaming bodies', () => {
  const servers: Array<http.Server | https.Server> = [];
  let set: UpstreamSet;
  let front: string;
  /** Per upload id: bytes the upstream got, and bytes the client had produced when the upstream's first byte came. */
  const received = new Map<string, { bytes: number; clientSentAtFirstByte: number }>();
  /** The download the upstream is serving now. */
  interface Download {
    written: number;
    res: http.ServerResponse | null;
    closed: boolean;
  }
  let down: Download = { written: 0, res: null, closed: false };

  before(async () => {
    const up = await listen(
      http.createServer((req, res) => {
        const url = new URL(req.url ?? '/', 'http://x');
        if (url.pathname === '/upload') {
          let n = 0;
          let atFirst = -1;
          req.on('data', (c: Buffer) => {
            if (atFirst < 0) atFirst = clientSent;
            n += c.length;
          });
          req.on('end', () => {
            received.set(String(url.searchParams.get('id')), { bytes: n, clientSentAtFirstByte: atFirst });
            res.end(String(n));
          });
          return;
        }
        // /download?size=N[&chunked=1]: N bytes, written with backpressure
        const size = Number(url.searchParams.get('size'));
        const state: Download = { written: 0, res, closed: false };
        down = state;
        res.on('close', () => (state.closed = true));
        res.writeHead(200, url.searchParams.get('chunked') === '1' ? {} : { 'content-length': size });
        let left = size;
        const pump = (): void => {
          while (left > 0) {
            const n = Math.min(left, CHUNK.length);
            left -= n;
            state.written += n;
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

  /** Bytes received, and bytes the upstream had written when the client's first body byte came. */
  async function download(query: string): Promise<{ bytes: number; upstreamWrittenAtFirstByte: number }> {
    const req = https.get(`${front}/download?${query}`, { agent });
    const [res] = (await once(req, 'response')) as [http.IncomingMessage];
    assert.equal(res.statusCode, 200);
    let n = 0;
    let atFirst = -1;
    for await (const c of res) {
      if (atFirst < 0) atFirst = down.written;
      n += (c as Buffer).length;
    }
    return { bytes: n, upstreamWrittenAtFirstByte: atFirst };
  }

  for (const [label, size] of [
    ['1 MiB', 1 * MiB],
    ['50 MiB', 50 * MiB],
  ] as const) {
    it(`uploads ${label} (content-length and chunked): every byte arrives`, async () => {
      for (const chunked of [false, true]) {
        const id = `${label}-${chunked}`;
        assert.equal(await upload(id, size, chunked), String(size));
        assert.equal(received.get(id)?.bytes, size);
      }
    });

    it(`downloads ${label} (content-length and chunked): every byte arrives`, async () => {
      for (const chunked of [false, true]) {
        assert.equal((await download(`size=${size}&chunked=${chunked ? 1 : 0}`)).bytes, size);
      }
    });
  }

  // A gateway that buffered whole bodies would pass the byte counts above: this one would
  // not. Loopback socket buffers hold a few MiB per hop, far below 50 MiB.
  it('a 50 MiB body is streamed, not buffered: the far side gets bytes before the sender has finished', async (t) => {
    const size = 50 * MiB;
    for (const chunked of [false, true]) {
      const id = `streamed-${chunked}`;
      await upload(id, size, chunked);
      const r = received.get(id)!;
      const sent = r.clientSentAtFirstByte;
      t.diagnostic(`upload chunked=${chunked}: client had sent ${fmt(sent)} at the upstream's first byte`);
      assert.ok(sent >= 0 && sent < size, `upload chunked=${chunked} was buffered whole`);
      const d = await download(`size=${size}&chunked=${chunked ? 1 : 0}`);
      const written = d.upstreamWrittenAtFirstByte;
      t.diagnostic(`download chunked=${chunked}: upstream had written ${fmt(written)} at the client's first byte`);
      assert.equal(d.bytes, size);
      assert.ok(written >= 0 && written < size, `download chunked=${chunked} was buffered whole`);
    }
  });

  it('a client that stops reading stalls the upstream, then all of it arrives when it reads again', async (t) => {
    const size = 256 * MiB;
    const req = https.get(`${front}/download?size=${size}`, { agent });
    const [res] = (await once(req, 'response')) as [http.IncomingMessage];
    res.pause();
    const state = down;
    // Stalled = the upstream's writes are blocked (needs drain) and its count no longer moves.
    let last = -1;
    let still = 0;
    await until(
      () => {
        const blocked = state.res?.writableNeedDrain === true && state.written === last;
        still = blocked ? still + 1 : 0;
        last = state.written;
        return still >= 20;
      },
      'upstream writes to block',
      30_000,
      25,
    );
    const inFlight = state.written;
    t.diagnostic(`stalled: the upstream wrote ${fmt(inFlight)} of ${fmt(size)} while the client read nothing`);
    // Without backpressure the gateway would take all 256 MiB from the upstream.
    assert.ok(inFlight < size, 'the upstream wrote the whole body while the client read nothing');
    // Reading again resumes the upstream (a 'drain' on its side) and every byte arrives.
    const drained = once(state.res!, 'drain');
    let n = 0;
    for await (const c of res) n += (c as Buffer).length;
    await drained;
    assert.equal(n, size);
    assert.equal(state.written, size);
  });

  it('a client that disconnects mid-download aborts the upstream request', async () => {
    const opts = { agent: false, ca: pki().frontCa.cert, servername: 'localhost' } as const;
    const req = https.get(`${front}/download?size=${256 * MiB}`, opts);
    const [res] = (await once(req, 'response')) as [http.IncomingMessage];
    const state = down;
    await once(res, 'data');
    req.destroy();
    await until(() => state.closed, 'upstream response to be closed');
    assert.ok(state.written < 256 * MiB);
  });
});
