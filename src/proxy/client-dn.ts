// The verified client certificate's subject as one header value: an RFC 4514 string.
// The subject comes from a certificate the client chose, so every byte is hostile: RFC 4514
// escaping keeps ',', '+', '"', '\', '<', '>', ';', '=' and a leading '#' or space inside
// their value, and every byte outside printable ASCII (CR, LF, NUL, UTF-8) is written as
// '\' + two hex digits, so the value can neither end the header nor fake another RDN.

/** Node's parsed subject: attribute → value, or values when the attribute repeats. */
export type ParsedDn = Readonly<Record<string, string | readonly string[] | undefined>>;

const SPECIAL = new Set([',', '+', '"', '\\', '<', '>', ';', '=']);

export function escapeDnValue(value: string): string {
  let out = '';
  const bytes = Buffer.from(value, 'utf8');
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    const c = String.fromCharCode(b);
    const edge = (i === 0 && (c === ' ' || c === '#')) || (i === bytes.length - 1 && c === ' ');
    if (b < 0x20 || b >= 0x7f) out += '\\' + b.toString(16).toUpperCase().padStart(2, '0');
    else if (SPECIAL.has(c) || edge) out += '\\' + c;
    else out += c;
  }
  return out;
}

/** Attribute types as Node names them are letters, digits and '-' or an OID; anything else is dropped. */
const TYPE = /^(?:[A-Za-z][A-Za-z0-9-]*|\d+(?:\.\d+)+)$/;

/**
 * RFC 4514 order is the reverse of the certificate's (most specific RDN first):
 * `C=US, O=Example, CN=alice` becomes `CN=alice,O=Example,C=US`.
 */
export function rfc4514(dn: ParsedDn): string {
  const rdns: string[] = [];
  for (const [type, v] of Object.entries(dn)) {
    if (v === undefined || !TYPE.test(type)) continue;
    for (const one of typeof v === 'string' ? [v] : v) rdns.push(`${type}=${escapeDnValue(one)}`);
  }
  return rdns.reverse().join(',');
}
