// Secret references: `$env://NAME`, `$file://path`, `$secret://vault/<provider>/<path…>/<field>`,
// `$secret://aws/<provider>/<secret-id>[/<json-field>]`. Anything else is a literal.
// Short forms (the seeds'): `$secret://vault/<path…>/<field>` and `$secret://aws/<secret-id>[/<json-field>]`
// go to the provider of that type marked `default: true`. Which form a text is depends on the
// providers: its first segment is the id of a provider of that type → long, otherwise short.
// `$secret://local/<id>`: the built-in secret store (config_store.etcd.secrets, src/store/secrets.ts).
import type { ErrorCode } from '../errors';

export type SecretRef =
  | { kind: 'env'; name: string; text: string }
  | { kind: 'file'; path: string; text: string }
  | { kind: 'vault'; provider: string; path: string; field: string; text: string }
  | { kind: 'aws'; provider: string; secretId: string; field?: string; text: string }
  | { kind: 'local'; id: string; text: string };

export type ParsedValue = { ok: true; ref: SecretRef | null } | { ok: false; message: string; code?: ErrorCode };

/** What decides long vs short: the configured providers (id, type, default). */
export interface ProviderScope {
  readonly id: string;
  readonly type: 'vault' | 'aws';
  readonly default?: boolean;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const SEGMENT = /^[A-Za-z0-9._~@+=:%-]+$/;
/** Ids of the built-in secret store: those of every stored object. */
export const LOCAL_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function isReference(value: string): boolean {
  return value.startsWith('$env://') || value.startsWith('$file://') || value.startsWith('$secret://');
}

/**
 * Parse a config value; `ref: null` = literal. Never echoes anything but the reference text.
 * With `providers`, a `$secret://` reference is bound to its provider (long or short form,
 * see above) and one that has none is refused; without, only its syntax is checked and
 * `provider` is the long reading's (or "" when only the short one fits).
 */
export function parseValue(value: string, providers?: readonly ProviderScope[]): ParsedValue {
  if (value.startsWith('$env://')) {
    const name = value.slice(7);
    return ENV_NAME.test(name)
      ? { ok: true, ref: { kind: 'env', name, text: value } }
      : { ok: false, message: `"${value}" is not a valid $env:// reference (expected $env://NAME)` };
  }
  if (value.startsWith('$file://')) {
    const path = value.slice(8);
    return path.length > 0 && !path.includes('\0')
      ? { ok: true, ref: { kind: 'file', path, text: value } }
      : { ok: false, message: `"${value}" is not a valid $file:// reference (expected $file://path)` };
  }
  if (value.startsWith('$secret://')) {
    const parts = value.slice(10).split('/');
    const [manager, ...rest] = parts;
    if (parts.some((p) => !SEGMENT.test(p))) {
      return { ok: false, message: `"${value}" is not a valid $secret:// reference (empty or invalid path segment)` };
    }
    if (manager === 'local') {
      return rest.length === 1 && LOCAL_ID.test(rest[0]!)
        ? { ok: true, ref: { kind: 'local', id: rest[0]!, text: value } }
        : { ok: false, message: `"${value}" is not a valid local reference (expected $secret://local/<id>)` };
    }
    if (manager !== 'vault' && manager !== 'aws') {
      const m = `"${value}" names an unknown secret manager "${manager}" (expected vault, aws or local)`;
      return { ok: false, message: m };
    }
    // Segments after the provider id: vault needs a path and a field, aws a secret id and an optional field.
    const [min, max] = manager === 'vault' ? [2, Infinity] : [1, 2];
    const longFits = rest.length - 1 >= min && rest.length - 1 <= max;
    const shortFits = rest.length >= min && rest.length <= max;
    if (!longFits && !shortFits) {
      const shape =
        manager === 'vault'
          ? '$secret://vault/[<provider-id>/]<path…>/<field>'
          : '$secret://aws/[<provider-id>/]<secret-id>[/<json-field>]';
      return { ok: false, message: `"${value}" is not a valid ${manager} reference (expected ${shape})` };
    }
    const bound = bind(value, manager, rest, longFits, shortFits, providers);
    if (!bound.ok) return bound;
    const [provider, segs] = [bound.provider, bound.segments];
    if (manager === 'vault') {
      return {
        ok: true,
        ref: { kind: 'vault', provider, path: segs.slice(0, -1).join('/'), field: segs[segs.length - 1]!, text: value },
      };
    }
    // AWS secret names often hold "/": write it as %2F (`prod%2Ftls%2Fapi`).
    let secretId: string;
    try {
      secretId = decodeURIComponent(segs[0]!);
    } catch {
      return { ok: false, message: `"${value}" has an invalid %-escape in its secret id` };
    }
    return { ok: true, ref: { kind: 'aws', provider, secretId, ...(segs[1] ? { field: segs[1] } : {}), text: value } };
  }
  return { ok: true, ref: null };
}

type Bound = { ok: true; provider: string; segments: string[] } | { ok: false; message: string; code: ErrorCode };

/** Long or short form, and which provider (see the head of this file). */
function bind(
  text: string,
  manager: 'vault' | 'aws',
  rest: string[],
  longFits: boolean,
  shortFits: boolean,
  providers: readonly ProviderScope[] | undefined,
): Bound {
  if (providers === undefined) {
    return longFits
      ? { ok: true, provider: rest[0]!, segments: rest.slice(1) }
      : { ok: true, provider: '', segments: rest };
  }
  const byId = providers.find((p) => p.id === rest[0]);
  if (longFits && byId?.type === manager) return { ok: true, provider: byId.id, segments: rest.slice(1) };
  const defaults = providers.filter((p) => p.type === manager && p.default === true);
  if (shortFits && defaults.length === 1) return { ok: true, provider: defaults[0]!.id, segments: rest };
  const fail = (message: string, code: ErrorCode): Bound => ({ ok: false, message: `${text}: ${message}`, code });
  if (shortFits && defaults.length > 1) {
    const ids = defaults.map((p) => `"${p.id}"`).join(', ');
    return fail(`${manager} providers ${ids} are all marked default: true; mark one`, 'TLSGATE_E_SECRET_DEFAULT');
  }
  if (longFits && byId) {
    return fail(`secret provider "${byId.id}" is of type ${byId.type}, not ${manager}`, 'TLSGATE_E_SECRET_PROVIDER');
  }
  const short = `a short reference needs a ${manager} provider marked default: true`;
  if (longFits) {
    const known = providers.map((p) => `"${p.id}"`).join(', ') || 'none';
    const also = shortFits ? `; read as a short reference, ${short}` : '';
    return fail(`secret provider "${rest[0]}" is not configured (secret_providers has ${known})${also}`,
      'TLSGATE_E_SECRET_PROVIDER');
  }
  const ofType = providers.filter((p) => p.type === manager).map((p) => `"${p.id}"`);
  const which = ofType.length ? `${manager} providers: ${ofType.join(', ')}` : `no ${manager} provider is configured`;
  return fail(`no ${manager} provider is marked default: true (${which}); ${short}, or write the long form ` +
    `$secret://${manager}/<provider-id>/…`, 'TLSGATE_E_SECRET_DEFAULT');
}
