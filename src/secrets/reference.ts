// Secret references: `$env://NAME`, `$file://path`, `$secret://vault/<provider>/<path…>/<field>`,
// `$secret://aws/<provider>/<secret-id>[/<json-field>]`. Anything else is a literal.

export type SecretRef =
  | { kind: 'env'; name: string; text: string }
  | { kind: 'file'; path: string; text: string }
  | { kind: 'vault'; provider: string; path: string; field: string; text: string }
  | { kind: 'aws'; provider: string; secretId: string; field?: string; text: string };

export type ParsedValue = { ok: true; ref: SecretRef | null } | { ok: false; message: string };

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const SEGMENT = /^[A-Za-z0-9._~@+=:%-]+$/;

export function isReference(value: string): boolean {
  return value.startsWith('$env://') || value.startsWith('$file://') || value.startsWith('$secret://');
}

/** Parse a config value; `ref: null` = literal. Never echoes anything but the reference text. */
export function parseValue(value: string): ParsedValue {
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
    const [manager, provider, ...rest] = parts;
    if (parts.some((p) => !SEGMENT.test(p))) {
      return { ok: false, message: `"${value}" is not a valid $secret:// reference (empty or invalid path segment)` };
    }
    if (manager === 'vault') {
      if (!provider || rest.length < 2) {
        return {
          ok: false,
          message: `"${value}" is not a valid vault reference (expected $secret://vault/<provider-id>/<path…>/<field>)`,
        };
      }
      return {
        ok: true,
        ref: { kind: 'vault', provider, path: rest.slice(0, -1).join('/'), field: rest[rest.length - 1]!, text: value },
      };
    }
    if (manager === 'aws') {
      if (!provider || rest.length < 1 || rest.length > 2) {
        return {
          ok: false,
          message: `"${value}" is not a valid aws reference (expected $secret://aws/<provider-id>/<secret-id>[/<json-field>])`,
        };
      }
      // AWS secret names often hold "/": write it as %2F (`prod%2Ftls%2Fapi`).
      let secretId: string;
      try {
        secretId = decodeURIComponent(rest[0]!);
      } catch {
        return { ok: false, message: `"${value}" has an invalid %-escape in its secret id` };
      }
      return {
        ok: true,
        ref: { kind: 'aws', provider, secretId, ...(rest[1] ? { field: rest[1] } : {}), text: value },
      };
    }
    return { ok: false, message: `"${value}" names an unknown secret manager "${manager}" (expected vault or aws)` };
  }
  return { ok: true, ref: null };
}
