// Reads the server name out of a TLS ClientHello before any TLS object exists, so the
// node engine can build the connection's TLS socket from the SSL object's own context
// (all its pairs, its client CA, its versions) instead of switching contexts in an SNI
// callback: Node's switch copies one certificate into a connection made from the
// default context, whose own certificate stays in its slot (RFC 8446 §4.1.2, RFC 6066 §3).

/** Bytes of ClientHello buffered at most; a bigger one is refused (real ones are < 2 KiB). */
export const MAX_HELLO_BYTES = 16 * 1024;

export type HelloResult =
  /** More bytes are needed: at least `need` in all before parsing again makes progress. */
  | { kind: 'partial'; need: number }
  /** Not a TLS handshake (plain HTTP on the TLS port, garbage) or over the size cap. */
  | { kind: 'invalid' }
  /** A complete ClientHello; servername absent when the client sent none. */
  | { kind: 'hello'; servername?: string };

/**
 * Parse what has arrived so far. A ClientHello may span several handshake records;
 * their fragments are joined until the handshake message is complete.
 */
export function parseClientHello(buf: Buffer): HelloResult {
  const hs: Buffer[] = [];
  let have = 0;
  let off = 0;
  for (;;) {
    if (buf.length < off + 5)
      return off + 5 > MAX_HELLO_BYTES ? { kind: 'invalid' } : { kind: 'partial', need: off + 5 };
    // Content type 22 (handshake), record version 3.x.
    if (buf[off] !== 22 || buf[off + 1] !== 3) return { kind: 'invalid' };
    const len = buf.readUInt16BE(off + 3);
    if (len === 0 || len > 16_384 + 2048) return { kind: 'invalid' };
    const end = off + 5 + len;
    if (buf.length < end) return end > MAX_HELLO_BYTES ? { kind: 'invalid' } : { kind: 'partial', need: end };
    hs.push(buf.subarray(off + 5, off + 5 + len));
    have += len;
    off += 5 + len;
    const msg = hs.length === 1 ? hs[0]! : Buffer.concat(hs, have);
    if (msg.length < 4) continue;
    // Handshake type 1 (client_hello), 24-bit length.
    if (msg[0] !== 1) return { kind: 'invalid' };
    const body = msg.readUIntBE(1, 3);
    if (body + 4 > MAX_HELLO_BYTES) return { kind: 'invalid' };
    if (msg.length < body + 4) continue;
    return helloBody(msg.subarray(4, 4 + body));
  }
}

function helloBody(b: Buffer): HelloResult {
  try {
    let p = 2 + 32; // legacy_version, random
    p += 1 + b.readUInt8(p); // session id
    p += 2 + b.readUInt16BE(p); // cipher suites
    p += 1 + b.readUInt8(p); // compression methods
    if (p === b.length) return { kind: 'hello' }; // no extensions
    const end = p + 2 + b.readUInt16BE(p);
    if (end > b.length) return { kind: 'invalid' };
    p += 2;
    while (p + 4 <= end) {
      const type = b.readUInt16BE(p);
      const len = b.readUInt16BE(p + 2);
      p += 4;
      if (p + len > end) return { kind: 'invalid' };
      if (type === 0) return serverName(b.subarray(p, p + len));
      p += len;
    }
    return { kind: 'hello' };
  } catch {
    // A read past the end: truncated or malformed.
    return { kind: 'invalid' };
  }
}

/** server_name extension: a list of (type, name); type 0 is host_name. */
function serverName(e: Buffer): HelloResult {
  let p = 2;
  const end = Math.min(e.length, 2 + e.readUInt16BE(0));
  while (p + 3 <= end) {
    const type = e.readUInt8(p);
    const len = e.readUInt16BE(p + 1);
    p += 3;
    if (p + len > end) return { kind: 'invalid' };
    // Kept as sent (latin1, so no byte is lost): the SNI map rejects anything not a host name.
    if (type === 0) return { kind: 'hello', servername: e.toString('latin1', p, p + len) };
    p += len;
  }
  return { kind: 'hello' };
}

/** A fatal unrecognized_name alert (RFC 6066 §3), sent when no SSL object serves the name. */
export const UNRECOGNIZED_NAME_ALERT = Buffer.from([21, 3, 3, 0, 2, 2, 112]);
