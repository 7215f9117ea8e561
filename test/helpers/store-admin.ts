// Admin API writes from tests: JSON bodies, If-Match, the ETag back.
export interface WriteReply {
  status: number;
  etag: string | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON bodies are asserted field by field
  body: any;
}

export async function adminWrite(
  adminPort: number,
  apiKey: string,
  method: 'PUT' | 'DELETE' | 'GET',
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<WriteReply> {
  const res = await fetch(`http://127.0.0.1:${adminPort}${path}`, {
    method,
    headers: { 'x-api-key': apiKey, 'content-type': 'application/json', ...headers },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* text */
  }
  return { status: res.status, etag: res.headers.get('etag'), body: parsed };
}
