// CPU ns per checkRequest() call on typical and hostile requests (single process, no I/O).
//
//   node build/bench/request-check.js [--iterations 500000]
//
// The fast path (no `%`, `//` or `/.` in the path) should cost about what the header
// loop costs; the slow path is paid only by requests that need normalizing.
import { checkRequest } from '../src/proxy/request-check';
import type { RequestLimits } from '../src/snapshot/types';

const limits: RequestLimits = {
  maxHeaderCount: 100,
  maxHeaderBytes: 32 * 1024,
  maxRequestLine: 8 * 1024,
  maxBodySize: null,
};
const browser = [
  'Host', 'shop.example.com',
  'User-Agent', 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36',
  'Accept', 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
  'Accept-Language', 'en-US,en;q=0.9',
  'Accept-Encoding', 'gzip, deflate, br',
  'Cookie', 'session=abcdef0123456789; theme=dark',
  'Connection', 'keep-alive',
  'Content-Length', '0',
];
const cases: Array<[string, string]> = [
  ['fast path: /api/v1/users/42?x=1', '/api/v1/users/42?x=1'],
  ['fast path: /', '/'],
  ['slow: percent-decoding /%61pi/v1/%7Euser', '/%61pi/v1/%7Euser'],
  ['slow: dot segments /a/b/../c/./d', '/a/b/../c/./d'],
  ['slow: duplicate slashes //a//b', '//a//b'],
];

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}

const n = Number(arg('iterations', '500000'));
let sink = 0;
for (const [what, target] of cases) {
  for (let i = 0; i < 20_000; i++) sink += checkRequest('GET', target, browser, limits).ok ? 1 : 0;
  // CPU time, not wall time: on shared cores the wall clock also counts other processes.
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) sink += checkRequest('GET', target, browser, limits).ok ? 1 : 0;
  const c = process.cpuUsage(c0);
  const ns = ((c.user + c.system) * 1000) / n;
  console.log(`${what.padEnd(45)} ${ns.toFixed(0).padStart(5)} ns CPU/request`);
}
if (sink === 0) console.log('(nothing accepted)');
