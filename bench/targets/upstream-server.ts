// Fallback upstream when nginx is absent: a plain node:http 200, in its own process.
import { createServer } from 'node:http';

const port = Number(process.argv[2]);
const body = Buffer.from('upstream ok');
const server = createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
});
server.keepAliveTimeout = 75_000; // 75 seconds, as the gateways' pools
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
