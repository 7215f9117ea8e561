// A fast path for the plain shape of YAML a tlsgate config uses: block mappings and
// sequences, one-line flow collections (`- { id: s1, snis: ["a.test"], cert: "$file://…" }`)
// and one-line scalars. The `yaml` package parses ~1-1.5 MB/s here (1.0-1.5 s for a 10k-object
// file, ~10 s at 100k, measured: the largest part of a warm start); this reads the same text
// in tens of ms. It returns exactly what `parseDocument(text, { uniqueKeys: true }).toJS()`
// (YAML 1.2, core schema) returns, or undefined for anything outside that shape (anchors,
// tags, block scalars, multi-line scalars, escapes other than JSON's, numbers other than
// plain decimals, duplicate keys, tabs, a syntax error...): the caller then parses with
// `yaml`, which reports every error with its line and column as before. It never reports
// an error itself. test/config-source.test.ts compares both parsers on every shape.

type Value = null | boolean | number | string | Value[] | { [k: string]: Value };

/** undefined: not in the fast shape; parse with `yaml`. */
export function fastYaml(text: string): Record<string, Value> | undefined {
  // Tabs, CR, control characters, BOM, C1, NEL, line/paragraph separators: YAML gives them
  // meanings (or errors) this reader does not model.
  if (/[\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff\u2028\u2029\t\r]/.test(text)) return undefined;
  const lines: Line[] = [];
  for (const raw of text.split('\n')) {
    const content = raw.trimStart();
    if (content === '' || content.startsWith('#')) continue;
    // Directives, document markers, explicit keys: not this shape.
    if (/^(?:%|---|\.\.\.|\? |\?$)/.test(raw)) return undefined;
    lines.push({ indent: raw.length - content.length, text: content.trimEnd() });
  }
  if (lines.length === 0 || lines[0]!.indent !== 0) return undefined;
  try {
    const r = new BlockReader(lines);
    const top = r.block(0);
    if (r.i !== lines.length || top === null || typeof top !== 'object' || Array.isArray(top)) return undefined;
    return top;
  } catch (e) {
    if (e === OUT) return undefined;
    throw e;
  }
}

interface Line {
  indent: number;
  text: string;
}

/** Thrown inside the reader: the text leaves the fast shape. */
const OUT = new Error('not the fast shape');
function out(): never {
  throw OUT;
}

/** Keys the fast path accepts: what config fields and ids look like (never `__proto__`, `<<`, true, null...). */
const KEY = /^[A-Za-z_][A-Za-z0-9_./-]*$/;
const NOT_KEY = /^(?:__proto__|[Tt]rue|TRUE|[Ff]alse|FALSE|[Nn]ull|NULL|[Yy]es|[Nn]o)$/;

/** `yaml` refuses implicit keys over 1024 characters; config keys are short. A duplicate: `yaml` reports it. */
function usableKey(key: string, obj: object): boolean {
  return key.length <= 128 && KEY.test(key) && !NOT_KEY.test(key) && !Object.prototype.hasOwnProperty.call(obj, key);
}

function isSeqEntry(t: string): boolean {
  return t === '-' || t.startsWith('- ');
}

class BlockReader {
  i = 0;
  constructor(private readonly lines: Line[]) {}

  block(indent: number): Value {
    const l = this.lines[this.i]!;
    if (l.indent !== indent) out();
    return isSeqEntry(l.text) ? this.seq(indent) : this.map(indent);
  }

  private map(indent: number): Value {
    const obj: Record<string, Value> = {};
    while (this.i < this.lines.length) {
      const l = this.lines[this.i]!;
      if (l.indent < indent) break;
      if (l.indent > indent || isSeqEntry(l.text)) out();
      const m = /^([^\s:'"{}[\],#&*!|>%@`]+):(?: +(.*))?$/.exec(l.text);
      if (!m) out();
      const key = m[1]!;
      if (!usableKey(key, obj)) out();
      this.i++;
      const rest = m[2] ?? '';
      obj[key] = rest === '' || rest.startsWith('#') ? this.nested(indent, true) : this.inline(rest, indent);
    }
    return obj;
  }

  private seq(indent: number): Value {
    const arr: Value[] = [];
    while (this.i < this.lines.length) {
      const l = this.lines[this.i]!;
      if (l.indent < indent) break;
      if (l.indent > indent || !isSeqEntry(l.text)) break;
      const rest = l.text.slice(1).trimStart();
      const at = indent + (l.text.length - rest.length);
      if (rest === '' || rest.startsWith('#')) {
        this.i++;
        arr.push(this.nested(indent, false));
      } else if (/^[^\s:'"{}[\],#&*!|>%@`-][^\s:]*:(?: |$)/.test(rest)) {
        // `- key: value` opens a mapping at the key's column.
        this.lines[this.i] = { indent: at, text: rest };
        arr.push(this.map(at));
      } else if (isSeqEntry(rest)) {
        out();
      } else {
        this.i++;
        arr.push(this.inline(rest, indent));
      }
    }
    return arr;
  }

  /** The value of `key:` or `-` with nothing after it on the line. */
  private nested(indent: number, inMap: boolean): Value {
    const next = this.lines[this.i];
    if (next && next.indent > indent) return this.block(next.indent);
    // A sequence may sit at its key's own column (`key:\n- a`).
    if (inMap && next && next.indent === indent && isSeqEntry(next.text)) return this.seq(indent);
    return null;
  }

  /** A one-line value after `key: ` or `- `; nothing may continue it on the next lines. */
  private inline(rest: string, indent: number): Value {
    const next = this.lines[this.i];
    if (next && next.indent > indent) out(); // a multi-line scalar or a nested block after a value
    const f = new FlowReader(rest);
    const v = f.value(false);
    f.end();
    return v;
  }
}

// Sticky: matched at the reader's position, no copy of the rest of the line.
const FLOW_KEY = /([^\s:'"{}[\],#&*!|>%@`]+): +/y;
const DOUBLE = /"(?:[^"\\]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"/y;
const SINGLE = /'(?:[^']|'')*'/y;

class FlowReader {
  private p = 0;
  constructor(private readonly s: string) {}

  private spaces(): void {
    while (this.s[this.p] === ' ') this.p++;
  }

  /** Only spaces, then maybe a comment (after a space), may follow. */
  end(): void {
    const before = this.p;
    this.spaces();
    if (this.p === this.s.length) return;
    if (this.s[this.p] === '#' && this.p > before) return;
    out();
  }

  value(inFlow: boolean): Value {
    this.spaces();
    const c = this.s[this.p];
    if (c === '[') return this.flowSeq();
    if (c === '{') return this.flowMap();
    if (c === '"') return this.double();
    if (c === "'") return this.single();
    return this.plain(inFlow);
  }

  private flowSeq(): Value[] {
    this.p++;
    const arr: Value[] = [];
    this.spaces();
    if (this.s[this.p] === ']') {
      this.p++;
      return arr;
    }
    for (;;) {
      arr.push(this.value(true));
      this.spaces();
      const c = this.s[this.p++];
      if (c === ']') return arr;
      if (c !== ',') out();
      this.spaces();
      if (this.s[this.p] === ']') out(); // a trailing comma
    }
  }

  private flowMap(): Record<string, Value> {
    this.p++;
    const obj: Record<string, Value> = {};
    this.spaces();
    if (this.s[this.p] === '}') {
      this.p++;
      return obj;
    }
    for (;;) {
      FLOW_KEY.lastIndex = this.p;
      const m = FLOW_KEY.exec(this.s);
      if (!m) out();
      const key = m[1]!;
      if (!usableKey(key, obj)) out();
      this.p += m[0].length;
      const c0 = this.s[this.p];
      if (c0 === ',' || c0 === '}' || c0 === undefined) out(); // `{ a: }`: a null value, not this shape
      obj[key] = this.value(true);
      this.spaces();
      const c = this.s[this.p++];
      if (c === '}') return obj;
      if (c !== ',') out();
      this.spaces();
      if (this.s[this.p] === '}') out();
    }
  }

  /** JSON's escapes mean the same in YAML's double-quoted style; any other escape is not this shape. */
  private double(): string {
    DOUBLE.lastIndex = this.p;
    const m = DOUBLE.exec(this.s);
    if (!m) out();
    this.p += m[0].length;
    this.afterQuoted();
    return JSON.parse(m[0]) as string;
  }

  private single(): string {
    SINGLE.lastIndex = this.p;
    const m = SINGLE.exec(this.s);
    if (!m) out();
    this.p += m[0].length;
    this.afterQuoted();
    return m[0].slice(1, -1).replace(/''/g, "'");
  }

  /** `"a":` would start an implicit key (a mapping inside a flow sequence): not this shape. */
  private afterQuoted(): void {
    if (this.s[this.p] === ':') out();
  }

  private plain(inFlow: boolean): Value {
    const c = this.s[this.p];
    // Indicators that cannot start a plain scalar, or start one only in forms not read here.
    if (c === undefined || /[-?:,\]}#&*!|>%@`]/.test(c)) out();
    const start = this.p;
    // Up to a comment (` #`), or `: ` (a mapping), or in flow context a flow indicator.
    const stop = inFlow ? /[,[\]{}]| #|:(?=[ ,[\]{}]|$)/g : / #|:(?= |$)/g;
    stop.lastIndex = start;
    const m = stop.exec(this.s);
    let end = m ? m.index : this.s.length;
    if (m && m[0].startsWith(':')) out();
    this.p = end;
    while (end > start && this.s[end - 1] === ' ') end--;
    return scalar(this.s.slice(start, end));
  }
}

/** A plain scalar under the YAML 1.2 core schema, or out() when it looks like a form not read here. */
function scalar(t: string): Value {
  if (t === '') out();
  if (/^(?:~|[Nn]ull|NULL)$/.test(t)) return null;
  if (/^(?:[Tt]rue|TRUE)$/.test(t)) return true;
  if (/^(?:[Ff]alse|FALSE)$/.test(t)) return false;
  // Decimal integers that are exact as a double; every other number-like form goes to `yaml`.
  if (/^[0-9]{1,15}$/.test(t)) return parseInt(t, 10);
  if (/^[-+.0-9]/.test(t) && /^[-+]?(?:\.[0-9]|[0-9]|\.(?:inf|Inf|INF|nan|NaN|NAN))/.test(t)) {
    // 127.0.0.1:443, 10s, 1.2.3: strings; anything the core schema could read as a number: `yaml`.
    if (/^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+|[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?)$/.test(t)) {
      out();
    }
    if (/^(?:[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$/.test(t)) out();
  }
  return t;
}
