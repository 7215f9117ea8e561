// pino, with the fields that may hold key material censored wherever they appear.
// Never pass a raw config or snapshot object to the logger: these paths are a net,
// not the design.
import pino, { type Logger } from 'pino';

export type { Logger };

const REDACT = [
  'key',
  'keys',
  'cert',
  'certs',
  'pairs',
  'token',
  'secret',
  'secret_id',
  'secret_access_key',
  'api_keys',
  'value',
  'bytes',
  '*.key',
  '*.keys',
  '*.pairs',
  '*.token',
  '*.secret',
  '*.secret_id',
  '*.secret_access_key',
  '*.api_keys',
  '*.value',
  'headers["x-api-key"]',
  'req.headers["x-api-key"]',
  'headers["x-vault-token"]',
  'headers.authorization',
];

export function createLogger(opts: { level?: string; file?: string; name?: string; fd?: number } = {}): Logger {
  const dest = opts.file
    ? pino.destination({ dest: opts.file, mkdir: true, sync: false })
    : pino.destination({ dest: opts.fd ?? 1, sync: true });
  return pino(
    {
      level: opts.level ?? 'info',
      base: { pid: process.pid, ...(opts.name ? { name: opts.name } : {}) },
      redact: { paths: REDACT, censor: '[redacted]' },
      serializers: { err: errSerializer },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    dest,
  );
}

/** Errors: code + message + (for config errors) the issue list; no stack of a secret-bearing cause. */
function errSerializer(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return { message: String(err) };
  const e = err as Error & { code?: string; issues?: unknown };
  return { type: e.name, code: e.code, message: e.message, ...(e.issues ? { issues: e.issues } : {}) };
}
