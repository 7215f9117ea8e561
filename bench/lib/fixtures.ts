// Certificates for every target, made with src/certs/pki.ts and cached in the
// git-ignored bench/.fixtures/ (10k certificates ≈ 3 s, 100k ≈ 30 s on two idle cores, once).
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { isMainThread, Worker, workerData } from 'node:worker_threads';
import { createCA, issue, type Issued } from '../../src/certs/pki';
import { FIXTURES_DIR } from './paths';

export const BENCH_SNI = 'bench.test';
export type Alg = 'ecdsa' | 'rsa';

export interface CertPair {
  alg: Alg;
  cert: string;
  key: string;
  certFile: string;
  keyFile: string;
  fingerprint256: string;
}

export interface BaseFixtures {
  dir: string;
  ca: { cert: string; certFile: string };
  ecdsa: CertPair;
  rsa: CertPair;
}

const MAX_AGE_MS = 180 * 86_400_000; // leaves are valid 365 days: regenerate well before
const fresh = (marker: string): boolean => existsSync(marker) && Date.now() - statSync(marker).mtimeMs < MAX_AGE_MS;

let caIssued: Issued | undefined;
function ca(dir: string): Issued {
  if (caIssued) return caIssued;
  const certFile = join(dir, 'ca.crt');
  const keyFile = join(dir, 'ca.key');
  if (existsSync(certFile) && existsSync(keyFile)) {
    // Rebuild the Issued shape from disk so the same CA signs later sets.
    const cert = readFileSync(certFile, 'utf8');
    const key = readFileSync(keyFile, 'utf8');
    const x = new X509Certificate(cert);
    const der = x.raw;
    caIssued = { cert, key, keyObject: createPrivateKey(key), der, subjectDer: subjectDerOf(der), ski: skiOf(x) };
    return caIssued;
  }
  caIssued = createCA('tlsgate bench CA', { keyType: 'ec' });
  writeFileSync(certFile, caIssued.cert);
  writeFileSync(keyFile, caIssued.key, { mode: 0o600 });
  return caIssued;
}

// Minimal DER walk: tbsCertificate → [version, serial, sigAlg, issuer, validity, subject].
function subjectDerOf(der: Buffer): Buffer {
  const children = (buf: Buffer, off: number): Array<[number, number]> => {
    const out: Array<[number, number]> = [];
    const [, hdr, len] = header(buf, off);
    let p = off + hdr;
    const end = p + len;
    while (p < end) {
      const [, h, l] = header(buf, p);
      out.push([p, h + l]);
      p += h + l;
    }
    return out;
  };
  const tbs = children(der, 0)[0]!;
  const fields = children(der, tbs[0]);
  const subject = fields[5]!;
  return der.subarray(subject[0], subject[0] + subject[1]);
}
function header(buf: Buffer, off: number): [number, number, number] {
  const tag = buf[off]!;
  const b = buf[off + 1]!;
  if (b < 0x80) return [tag, 2, b];
  const n = b & 0x7f;
  let len = 0;
  for (let i = 0; i < n; i++) len = len * 256 + buf[off + 2 + i]!;
  return [tag, 2 + n, len];
}
function skiOf(x: X509Certificate): Buffer {
  // pki.ts makes SKI = SHA-1 of the SPKI DER; recompute the same way.
  return createHash('sha1').update(x.publicKey.export({ type: 'spki', format: 'der' })).digest();
}

function pair(dir: string, alg: Alg, issued: { cert: string; key: string }, base: string = alg): CertPair {
  const certFile = join(dir, `${base}.crt`);
  const keyFile = join(dir, `${base}.key`);
  writeFileSync(certFile, issued.cert);
  writeFileSync(keyFile, issued.key, { mode: 0o600 });
  return load(dir, alg, base);
}
function load(dir: string, alg: Alg, base: string = alg): CertPair {
  const certFile = join(dir, `${base}.crt`);
  const keyFile = join(dir, `${base}.key`);
  const cert = readFileSync(certFile, 'utf8');
  return { alg, cert, key: readFileSync(keyFile, 'utf8'), certFile, keyFile, fingerprint256: new X509Certificate(cert).fingerprint256 };
}

/** The CA and one ECDSA P-256 and one RSA-2048 leaf for bench.test (+ localhost), shared by every target. */
export function baseFixtures(): BaseFixtures {
  const dir = join(FIXTURES_DIR, 'base');
  const marker = join(dir, 'complete');
  mkdirSync(dir, { recursive: true });
  if (!fresh(marker)) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    caIssued = undefined;
    const issuer = ca(dir);
    const dns = [BENCH_SNI, 'localhost'];
    pair(dir, 'ecdsa', issue({ cn: BENCH_SNI, dns, issuer, keyType: 'ec', eku: ['serverAuth'] }));
    pair(dir, 'rsa', issue({ cn: BENCH_SNI, dns, issuer, keyType: 'rsa', eku: ['serverAuth'] }));
    writeFileSync(marker, new Date().toISOString());
  }
  const issuer = ca(dir);
  return { dir, ca: { cert: issuer.cert, certFile: join(dir, 'ca.crt') }, ecdsa: load(dir, 'ecdsa'), rsa: load(dir, 'rsa') };
}

/** A new leaf for bench.test on the same key: a rotation changes the certificate (fingerprint), not the key. */
export function reissue(base: BaseFixtures, alg: Alg, dir: string, name: string): CertPair {
  const current = alg === 'ecdsa' ? base.ecdsa : base.rsa;
  const issued = issue({ cn: BENCH_SNI, dns: [BENCH_SNI, 'localhost'], issuer: ca(base.dir), key: createPrivateKey(current.key), eku: ['serverAuth'] });
  return pair(dir, alg, issued, name);
}

export interface SniSet {
  count: number;
  dir: string;
  /** All leaves share this key (ECDSA P-256): what the set measures is per-certificate cost. */
  keyFile: string;
  certFile(i: number): string;
  sni(i: number): string;
}

/** `count` ECDSA leaves h<i>.bench.test, one file each, shared key; cached. */
export function sniSet(count: number, log: (msg: string) => void = () => {}): SniSet {
  const dir = join(FIXTURES_DIR, `sni-${count}`);
  const marker = join(dir, 'complete');
  const set: SniSet = {
    count,
    dir,
    keyFile: join(dir, 'leaf.key'),
    certFile: (i) => join(dir, 'certs', `${i}.crt`),
    sni: (i) => `h${i}.bench.test`,
  };
  if (fresh(marker)) return set;
  const base = baseFixtures();
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'certs'), { recursive: true });
  const issuer = ca(base.dir);
  const first = issue({ cn: set.sni(0), dns: [set.sni(0)], issuer, keyType: 'ec', eku: ['serverAuth'] });
  writeFileSync(set.keyFile, first.key, { mode: 0o600 });
  writeFileSync(set.certFile(0), first.cert);
  signBatches({ dir, caDir: base.dir, keyPem: first.key, from: 1, to: count }, log);
  writeFileSync(marker, new Date().toISOString());
  return set;
}

interface Batch {
  dir: string;
  caDir: string;
  keyPem: string;
  from: number;
  to: number;
}
const BATCH_KIND = 'tlsgate-bench-sni-batch';

/**
 * Sign leaves [from, to) on every core (worker threads, ~0.6 ms each on one idle core:
 * 100k in ~30 s on two). The caller blocks on shared memory (Atomics.wait) so sniSet()
 * stays synchronous; slot 0 counts finished threads, slot 1 signed leaves, slot 2 errors.
 */
function signBatches(b: Batch, log: (msg: string) => void): void {
  const total = b.to - b.from;
  const threads = total < 2000 ? 1 : Math.max(1, Math.min(4, availableParallelism()));
  const shared = new Int32Array(new SharedArrayBuffer(12));
  const per = Math.ceil(total / threads);
  const workers: Worker[] = [];
  for (let t = 0; t < threads; t++) {
    const from = b.from + t * per;
    const to = Math.min(b.to, from + per);
    workers.push(new Worker(__filename, { workerData: { kind: BATCH_KIND, batch: { ...b, from, to }, shared } }));
  }
  const t0 = Date.now();
  let reported = 0;
  while (Atomics.load(shared, 0) < threads) {
    Atomics.wait(shared, 0, Atomics.load(shared, 0), 1000);
    const signed = Atomics.load(shared, 1);
    if (signed - reported >= 20_000) {
      reported = signed;
      log(`  fixtures: ${signed}/${total} certificates (${((Date.now() - t0) / 1000).toFixed(0)} s, ${threads} threads)`);
    }
  }
  for (const w of workers) void w.terminate();
  if (Atomics.load(shared, 2) > 0) throw new Error(`signing bench certificates failed in ${Atomics.load(shared, 2)} thread(s)`);
}

function runBatch(b: Batch, shared: Int32Array): void {
  try {
    const set = (i: number): string => `h${i}.bench.test`;
    const issuer = ca(b.caDir);
    const key = createPrivateKey(b.keyPem);
    for (let i = b.from; i < b.to; i++) {
      const cert = issue({ cn: set(i), dns: [set(i)], issuer, key, eku: ['serverAuth'] }).cert;
      writeFileSync(join(b.dir, 'certs', `${i}.crt`), cert);
      Atomics.add(shared, 1, 1);
    }
  } catch {
    Atomics.add(shared, 2, 1);
  } finally {
    Atomics.add(shared, 0, 1);
    Atomics.notify(shared, 0);
  }
}

if (!isMainThread && (workerData as { kind?: string } | null)?.kind === BATCH_KIND) {
  const d = workerData as { batch: Batch; shared: Int32Array };
  runBatch(d.batch, d.shared);
}

/** A new leaf for object `i` of a set, on the set's shared key (a renewal: new serial, same key). */
export function reissueSni(set: SniSet, i: number): { cert: string; serial: string } {
  const base = baseFixtures();
  const key = createPrivateKey(readFileSync(set.keyFile, 'utf8'));
  const issued = issue({ cn: set.sni(i), dns: [set.sni(i)], issuer: ca(base.dir), key, eku: ['serverAuth'] });
  return { cert: issued.cert, serial: new X509Certificate(issued.cert).serialNumber };
}
