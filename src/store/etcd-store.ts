// The etcd config store of one node: lists `<prefix>/`, watches from the listed revision,
// validates each change with the whole config before serving it (an invalid object keeps
// its last good version), and writes objects for the Admin API with a compare on their
// mod revision. Built-in secrets (`<prefix>/secrets/<id>`, src/store/secrets.ts) ride the same
// list and watch: each is decrypted and checked with the objects that use it.
import type { Etcd3, IKeyValue, ITxnResponse, IWatchResponse, Watcher } from 'etcd3';
import { type ConfigIssue } from '../errors';
import type { Logger } from '../log';
import type { Overlay, StoredCollection } from '../config/load';
import { BACKOFF_FIRST_MS, BACKOFF_MAX_MS, createClient, diagnoseTls, explainAuth } from './etcd-client';
import { ID, blame, keyOf, parseStored, readablePath, readableText, toOverlay, type StoredObject } from './objects';
import type { EtcdSettings } from './settings';
import type { LocalSecrets } from '../secrets/resolve';
import {
  SECRETS_COLLECTION, hashPrefix, localRefs, localView, open as openSealed, parseRecord, rewrapAll, seal,
  type Opened, type RewrapReport, type SecretInfo,
} from './secrets';

/** Error issues of building the config with these objects and built-in secrets (empty: it builds). */
export type Check = (overlay: Overlay, local?: LocalSecrets) => Promise<ConfigIssue[]>;

export interface StoreError {
  key: string;
  message: string;
}

export interface StoreStatus {
  kind: 'etcd';
  endpoints: string[];
  prefix: string;
  connected: boolean;
  /** etcd revision this node has seen (list or watch). */
  revision: number | null;
  /** Revision whose objects this node has validated and handed to the primary. */
  applied_revision: number | null;
  objects: number;
  errors: StoreError[];
}

/** What etcd holds at a key, as last listed or watched. */
type Latest = { obj: StoredObject } | { invalid: string; modRevision: string };

export interface WriteOutcome {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

export class EtcdStore {
  private readonly client: Etcd3;
  private latest = new Map<string, Latest>();
  private accepted = new Map<string, StoredObject>();
  /** Refused objects: key → mod revision refused and why. */
  private readonly refused = new Map<string, { modRevision: string; message: string }>();
  private connError: StoreError | undefined;
  private revision = 0;
  private applied = 0;
  private connected = false;
  private lostSeq = 0;
  private watcher: Watcher | undefined;
  private closed = false;
  private settling: Promise<void> | undefined;
  private dirty = false;
  private appliedWaiters: Array<{ rev: number; done: () => void }> = [];
  /** Bumped whenever `accepted` changes: a check made on one generation holds for it only. */
  private generation = 0;
  /** The value a PUT through this node validated: its watch event needs no second check. */
  private prechecked: { key: string; text: string; generation: number } | undefined;
  /** Built-in secrets (`<prefix>/secrets/<id>`) as etcd holds them, by id. */
  private secretsLatest = new Map<string, { text: string; modRevision: string }>();
  /** Built-in secrets as served (decrypted and validated with their referrers), by id. */
  private opened = new Map<string, Opened>();

  constructor(
    readonly settings: EtcdSettings,
    private readonly log: Logger,
    private readonly check: Check,
    /** The objects to serve changed (revision `rev` applied): rebuild the config. */
    private readonly onApplied: (rev: number) => void,
  ) {
    this.client = createClient(settings);
  }

  get prefix(): string {
    return this.settings.prefix;
  }

  /** First list (retried until start_timeout), its objects validated; then watch. Never throws. */
  async start(): Promise<void> {
    const until = Date.now() + this.settings.startTimeout;
    let delay = BACKOFF_FIRST_MS;
    for (;;) {
      try {
        await this.list();
        break;
      } catch (err) {
        await this.lost(err);
        if (Date.now() + delay > until) {
          this.log.error(
            { code: 'TLSGATE_E_STORE_UNAVAILABLE', endpoints: this.settings.endpoints, error: this.connError?.message },
            'config store not reachable at start: starting without its objects; they apply once it answers',
          );
          void this.relistLoop();
          return;
        }
        await sleep(delay);
        delay = Math.min(BACKOFF_MAX_MS, delay * 2);
      }
    }
    await this.settle(false);
    this.watch();
  }

  /** The validated objects, for the config build. */
  overlay(): Overlay {
    return toOverlay(this.accepted.values(), `etcd:${this.generation}`);
  }

  status(): StoreStatus {
    const errors = [...this.refused].map(([key, r]) => ({ key, message: r.message }));
    return {
      kind: 'etcd',
      endpoints: this.settings.endpoints,
      prefix: this.prefix,
      connected: this.connected,
      revision: this.revision || null,
      applied_revision: this.applied || null,
      objects: this.accepted.size,
      errors: this.connError ? [this.connError, ...errors] : errors,
    };
  }

  /** The stored object (as validated and served) and its mod revision. */
  get(collection: StoredCollection, id: string): StoredObject | undefined {
    return this.accepted.get(keyOf(this.prefix, collection, id));
  }

  private async list(): Promise<void> {
    const res = await this.client.getAll().prefix(`${this.prefix}/`).exec();
    const latest = new Map<string, Latest>();
    const secrets = new Map<string, { text: string; modRevision: string }>();
    for (const kv of res.kvs) {
      const key = kv.key.toString();
      const sid = this.secretId(key);
      if (sid !== undefined) secrets.set(sid, { text: kv.value.toString(), modRevision: kv.mod_revision });
      else latest.set(key, this.read(kv));
    }
    this.latest = latest;
    this.secretsLatest = secrets;
    this.revision = Number(res.header.revision);
    this.found();
    this.log.info({ revision: this.revision, objects: latest.size, prefix: this.prefix }, 'config store listed');
  }

  private read(kv: IKeyValue): Latest {
    const key = kv.key.toString();
    const p = parseStored(this.prefix, key, kv.value.toString(), kv.mod_revision);
    return p.ok ? { obj: p.obj } : { invalid: p.message, modRevision: kv.mod_revision };
  }

  /** Watch from the listed revision; etcd3 resumes from the last one seen after a disconnect. */
  private watch(): void {
    if (this.closed) return;
    const w = this.client
      .watch()
      .prefix(`${this.prefix}/`)
      .startRevision(String(this.revision + 1))
      .watcher();
    this.watcher = w;
    w.on('connected', () => this.found());
    w.on('disconnected', (err) => void this.lost(err));
    w.on('data', (res: IWatchResponse) => {
      for (const ev of res.events) {
        const key = ev.kv.key.toString();
        const sid = this.secretId(key);
        if (sid !== undefined) {
          if (ev.type === 'Delete') this.secretsLatest.delete(sid);
          else this.secretsLatest.set(sid, { text: ev.kv.value.toString(), modRevision: ev.kv.mod_revision });
        } else if (ev.type === 'Delete') this.latest.delete(key);
        else this.latest.set(key, this.read(ev.kv));
      }
      this.revision = Math.max(this.revision, Number(res.header.revision));
      if (res.events.length) this.changed();
      else this.resolveWaiters();
    });
    // A cancelled watch: its start revision was compacted (or etcd ended it): list again.
    w.on('error', (err) => {
      if (this.watcher !== w) return;
      this.watcher = undefined;
      this.log.warn({ error: err.message, revision: this.revision }, 'config store watch cancelled; listing again');
      void w.cancel().catch(() => undefined);
      void this.relistLoop();
    });
  }

  private async relistLoop(): Promise<void> {
    let delay = BACKOFF_FIRST_MS;
    while (!this.closed) {
      try {
        await this.list();
        this.changed();
        this.watch();
        return;
      } catch (err) {
        await this.lost(err);
        await sleep(delay);
        delay = Math.min(BACKOFF_MAX_MS, delay * 2);
      }
    }
  }

  private found(): void {
    if (!this.connected) this.log.info({ revision: this.revision }, 'config store connected');
    this.connected = true;
    this.connError = undefined;
  }

  private async lost(err: unknown): Promise<void> {
    const was = this.connected;
    this.connected = false;
    const seq = ++this.lostSeq;
    const endpoint = this.settings.endpoints[0]!;
    let message = explainAuth((err as Error).message ?? String(err), this.settings);
    // gRPC hides TLS failures behind "UNAVAILABLE" (or a stream that just ended): find the
    // cause with a handshake of our own.
    if (this.secure()) {
      const cause = await diagnoseTls(endpoint, this.settings).catch(() => null);
      if (cause) message = cause;
    }
    // Reconnected while the handshake ran, or a newer failure is being explained: this one is stale.
    if (this.connected || seq !== this.lostSeq) return;
    const changedMsg = this.connError?.message !== message;
    this.connError = { key: endpoint, message };
    if (was || changedMsg)
      this.log.warn(
        { code: 'TLSGATE_E_STORE_UNAVAILABLE', endpoint, error: message },
        'config store unavailable: the last good config keeps serving; reconnecting',
      );
  }

  private secure(): boolean {
    return !!this.settings.tls || this.settings.endpoints.some((e) => e.startsWith('https://'));
  }

  private changed(): void {
    this.dirty = true;
    if (this.settling) return;
    this.settling = (async () => {
      while (this.dirty && !this.closed) {
        this.dirty = false;
        await this.settle(true);
      }
    })().finally(() => (this.settling = undefined));
  }

  /**
   * Validate what changed since the last settle with the whole config. An object the build
   * blames is refused (its last good version stays); the others apply.
   */
  private async settle(notify: boolean): Promise<void> {
    const rev = this.revision;
    const t0 = performance.now();
    const pending = new Map<string, StoredObject | null>();
    for (const [key, l] of this.latest) {
      const a = this.accepted.get(key);
      if ('invalid' in l) {
        this.refuse(key, l.modRevision, l.invalid);
        continue;
      }
      if (a?.modRevision === l.obj.modRevision) continue;
      if (this.refused.get(key)?.modRevision === l.obj.modRevision) continue;
      pending.set(key, l.obj);
    }
    for (const key of this.accepted.keys()) if (!this.latest.has(key)) pending.set(key, null);
    // A refused key deleted from etcd: nothing left to refuse.
    for (const key of [...this.refused.keys()]) {
      const sid = this.secretId(key);
      if (sid === undefined ? !this.latest.has(key) : !this.secretsLatest.has(sid)) this.refused.delete(key);
    }
    const secrets = this.pendingSecrets();
    const openedNext = new Map(this.opened);
    for (const [id, o] of secrets) {
      if (o) openedNext.set(id, o);
      else openedNext.delete(id);
    }
    const view = localView(openedNext);
    const candidate = new Map(this.accepted);
    const put = (k: string, v: StoredObject | null | undefined): void => {
      if (v) candidate.set(k, v);
      else candidate.delete(k);
    };
    for (const [k, v] of pending) put(k, v);
    const pc = this.prechecked;
    const [only] = pending.size === 1 ? [...pending] : [];
    const checked =
      secrets.size === 0 &&
      !!only?.[1] &&
      pc?.key === only[0] &&
      pc.generation === this.generation &&
      JSON.stringify(only[1].value) === pc.text;
    // A changed secret needs a check only when an object uses it (its key must still match, …).
    const usesChanged = (o: StoredObject | undefined): string[] =>
      o && secrets.size ? [...localRefs(o.value)].filter((id) => secrets.has(id)) : [];
    const secretsUsed = secrets.size > 0 && [...candidate.values()].some((o) => usesChanged(o).length > 0);
    const total = pending.size + secrets.size;
    for (let round = 0; !checked && (pending.size > 0 || secretsUsed) && round <= total + 1; round++) {
      const overlay = toOverlay(candidate.values(), `check:${rev}:${round}`);
      const issues = (await this.check(overlay, view)).filter((i) => i.severity === 'error');
      if (issues.length === 0) break;
      const blamed = new Map<string, string[]>();
      for (const i of issues) {
        const b = blame(i, overlay);
        const text = b && readableText(show(i, b.inner), overlay, this.prefix);
        if (b && pending.has(b.key)) blamed.set(b.key, [...(blamed.get(b.key) ?? []), text!]);
        // An unchanged object fails with a changed secret: the secret is refused.
        else if (b)
          for (const id of usesChanged(candidate.get(b.key))) {
            const sk = this.secretKey(id);
            blamed.set(sk, [...(blamed.get(sk) ?? []), `${b.key.slice(this.prefix.length + 1)} would fail: ${text}`]);
          }
      }
      if (blamed.size === 0) {
        // The problems sit in objects that did not change or in the file: a delete left a
        // reference dangling, or the file itself is wrong. Refuse deletes first, then all.
        const deletes = [...pending].filter(([, v]) => v === null).map(([k]) => k);
        for (const [id, o] of secrets) if (o === null) deletes.push(this.secretKey(id));
        const why = issues
          .map((i) => readableText(`${readablePath(i, overlay, this.prefix)}: ${i.message}`, overlay, this.prefix))
          .join('; ');
        const all = [...pending.keys(), ...[...secrets.keys()].map((id) => this.secretKey(id))];
        for (const k of deletes.length ? deletes : all) blamed.set(k, [why]);
      }
      for (const [k, msgs] of blamed) {
        const sid = this.secretId(k);
        if (sid !== undefined) {
          this.refuse(k, this.secretsLatest.get(sid)?.modRevision ?? 'deleted', msgs.join('; '), this.opened.has(sid));
          secrets.delete(sid);
          const was = this.opened.get(sid);
          if (was) openedNext.set(sid, was);
          else openedNext.delete(sid);
          continue;
        }
        const l = this.latest.get(k);
        this.refuse(k, l && 'obj' in l ? l.obj.modRevision : 'deleted', msgs.join('; '));
        pending.delete(k);
        put(k, this.accepted.get(k));
      }
    }
    for (const k of pending.keys()) this.refused.delete(k);
    for (const id of secrets.keys()) this.refused.delete(this.secretKey(id));
    if (pending.size) this.generation++;
    this.accepted = candidate;
    this.opened = openedNext;
    this.applied = rev;
    this.resolveWaiters();
    if (pending.size > 0 || secrets.size > 0)
      this.log.info(
        {
          revision: rev,
          changed: pending.size,
          secrets_changed: secrets.size,
          refused: this.refused.size,
          check_ms: Math.round(performance.now() - t0),
        },
        'config store changes validated',
      );
    if (notify && (pending.size > 0 || secrets.size > 0)) this.onApplied(rev);
  }

  // ---- built-in secrets (src/store/secrets.ts) ---------------------------------------------

  private secretId(key: string): string | undefined {
    const head = `${this.prefix}/${SECRETS_COLLECTION}/`;
    return key.startsWith(head) ? key.slice(head.length) : undefined;
  }

  private secretKey(id: string): string {
    return `${this.prefix}/${SECRETS_COLLECTION}/${id}`;
  }

  /** Secrets whose record changed since served: decrypted (null: deleted); one that does not decrypt is refused. */
  private pendingSecrets(): Map<string, Opened | null> {
    const out = new Map<string, Opened | null>();
    for (const [id, l] of this.secretsLatest) {
      const key = this.secretKey(id);
      if (this.opened.get(id)?.modRevision === l.modRevision) continue;
      if (this.refused.get(key)?.modRevision === l.modRevision) continue;
      const o = this.openRecord(id, l);
      if (typeof o === 'string') this.refuse(key, l.modRevision, o, this.opened.has(id));
      else out.set(id, o);
    }
    for (const id of this.opened.keys()) if (!this.secretsLatest.has(id)) out.set(id, null);
    return out;
  }

  private openRecord(id: string, l: { text: string; modRevision: string }): Opened | string {
    const ring = this.settings.secrets;
    if (!ID.test(id)) return `"${id}" is not a valid secret id (1-64 letters, digits, ".", "_", "-")`;
    if (!ring) return `secrets/${id} cannot be decrypted: config_store.etcd.secrets is not set on this node`;
    const rec = parseRecord(l.text);
    if (typeof rec === 'string') return `secrets/${id}: ${rec}`;
    try {
      const value = openSealed(id, rec, ring);
      return { value, modRevision: l.modRevision, kek: rec.kek, created: rec.created, updated: rec.updated };
    } catch (err) {
      return `${(err as Error).message} [${(err as { code?: string }).code ?? 'TLSGATE_E_SECRET_DECRYPT'}]`;
    }
  }

  /** `$secret://local/<id>` as this node serves it (for the primary's secret resolution). */
  secretsView(): LocalSecrets {
    return { get: (id, reference) => localView(this.opened).get(id, reference) };
  }

  get secretsEnabled(): boolean {
    return this.settings.secrets !== undefined;
  }

  /** GET /v1/secrets: ids and metadata, never a value. */
  listSecrets(): SecretInfo[] {
    const out: SecretInfo[] = [];
    for (const [id, l] of [...this.secretsLatest].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      const rec = parseRecord(l.text);
      const o = this.opened.get(id);
      const err = this.refused.get(this.secretKey(id));
      out.push({
        id,
        kek: typeof rec === 'string' ? '' : rec.kek,
        created: typeof rec === 'string' ? '' : rec.created,
        updated: typeof rec === 'string' ? '' : rec.updated,
        mod_revision: Number(l.modRevision),
        sha256_prefix: o ? hashPrefix(o.value) : null,
        ...(o && o.modRevision !== l.modRevision ? { served_mod_revision: Number(o.modRevision) } : {}),
        ...(err ? { error: err.message } : {}),
      });
    }
    return out;
  }

  /** Seal and write secret `id` after checking the objects that use it with the new value. */
  async putSecret(id: string, value: string, ifMatch?: string): Promise<WriteOutcome> {
    const ring = this.settings.secrets!;
    const key = this.secretKey(id);
    const now = this.secretsLatest.get(id);
    const expected = ifMatch ?? now?.modRevision ?? '0';
    const next = new Map(this.opened);
    next.set(id, { value, modRevision: 'candidate', kek: ring.active, created: '', updated: '' });
    if ([...this.accepted.values()].some((o) => localRefs(o.value).has(id))) {
      const overlay = toOverlay(this.accepted.values(), `put:${key}:${Date.now()}`);
      const issues = (await this.check(overlay, localView(next))).filter((i) => i.severity === 'error');
      if (issues.length)
        return {
          status: 400,
          body: {
            error: {
              code: issues[0]!.code,
              message: `secrets/${id} refused: objects using it would fail, ${issues.length} problem(s); ` +
                'nothing was written',
              issues: issues.map((i) => ({
                path: readablePath(i, overlay, this.prefix),
                message: readableText(i.message, overlay, this.prefix),
                code: i.code,
              })),
            },
          },
        };
    }
    const old = now ? parseRecord(now.text) : undefined;
    const text = seal(id, value, ring, old && typeof old !== 'string' && old.created ? old.created : undefined);
    const res = await this.client
      .if(key, 'Mod', '==', expected)
      .then(this.client.put(key).value(text))
      .else(this.client.get(key))
      .commit();
    if (!res.succeeded) return conflict(key, expected, actualRev(res));
    const rev = Number(res.header.revision);
    await this.waitApplied(rev);
    this.log.info({ store_key: key, mod_revision: rev, kek: ring.active }, 'built-in secret written');
    const info = this.listSecrets().find((s) => s.id === id);
    return {
      status: expected === '0' ? 201 : 200,
      body: { ...(info ?? { id }), mod_revision: rev },
      headers: { etag: `"${rev}"` },
    };
  }

  async deleteSecret(id: string, ifMatch?: string): Promise<WriteOutcome | 'missing'> {
    const key = this.secretKey(id);
    const now = this.secretsLatest.get(id);
    if (!now) return 'missing';
    const expected = ifMatch ?? now.modRevision;
    const res = await this.client
      .if(key, 'Mod', '==', expected)
      .then(this.client.delete().key(key))
      .else(this.client.get(key))
      .commit();
    if (!res.succeeded) return conflict(key, expected, actualRev(res));
    await this.waitApplied(Number(res.header.revision));
    return { status: 200, body: { id, deleted: true, revision: Number(res.header.revision) } };
  }

  /**
   * Re-seal every secret not under the active KEK with it (KEK rotation). Each write compares
   * the record's mod revision, so a secret changed meanwhile is left to its writer.
   */
  async rewrap(): Promise<RewrapReport> {
    const r = await rewrapAll(this.client, this.prefix, this.settings.secrets!);
    if (r.revision) await this.waitApplied(r.revision);
    this.log.info({ rewrapped: r.rewrapped, unchanged: r.unchanged, failed: r.failed.length }, 'secrets rewrapped');
    return r;
  }

  private refuse(key: string, modRevision: string, message: string, had = this.accepted.has(key)): void {
    if (this.refused.get(key)?.modRevision === modRevision) return;
    const kept = had ? 'its last good version keeps serving' : 'it is not served';
    this.refused.set(key, { modRevision, message: `${message} (${kept})` });
    // `store_key`: the logger censors any field named `key`.
    this.log.warn(
      { code: 'TLSGATE_E_STORE_OBJECT', store_key: key, mod_revision: modRevision, error: message },
      `config store object refused: ${kept}`,
    );
  }

  private resolveWaiters(): void {
    const ready = this.appliedWaiters.filter((w) => this.applied >= w.rev);
    this.appliedWaiters = this.appliedWaiters.filter((w) => this.applied < w.rev);
    for (const w of ready) w.done();
  }

  /** Resolves once this node validated revision `rev` (or after timeoutMs). */
  waitApplied(rev: number, timeoutMs = 5_000): Promise<boolean> {
    if (this.applied >= rev) return Promise.resolve(true);
    return new Promise((resolve) => {
      const w = { rev, done: () => (clearTimeout(t), resolve(true)) };
      const t = setTimeout(() => {
        this.appliedWaiters = this.appliedWaiters.filter((x) => x !== w);
        resolve(false);
      }, timeoutMs);
      this.appliedWaiters.push(w);
    });
  }

  // ---- writes (Admin API) --------------------------------------------------------------

  /**
   * Validate `value` as `collection/id` with the running objects, then write it if its mod
   * revision is still `expected` (If-Match, or the one validated against).
   */
  async put(
    collection: StoredCollection,
    id: string,
    value: Record<string, unknown>,
    ifMatch?: string,
  ): Promise<WriteOutcome> {
    const key = keyOf(this.prefix, collection, id);
    const now = this.latest.get(key);
    // Our view may lag etcd (a write through another node not yet watched): etcd's compare decides.
    const expected = ifMatch ?? (now ? ('obj' in now ? now.obj.modRevision : now.modRevision) : '0');
    const obj: StoredObject = { key, collection, id, value: { ...value, id }, modRevision: 'candidate' };
    const candidate = new Map(this.accepted);
    candidate.set(key, obj);
    const t0 = performance.now();
    const overlay = toOverlay(candidate.values(), `put:${key}:${Date.now()}`);
    const issues = (await this.check(overlay)).filter((i) => i.severity === 'error');
    const t1 = performance.now();
    if (issues.length) {
      return {
        status: 400,
        body: {
          error: {
            code: issues[0]!.code,
            message: `${collection}/${id} refused, ${issues.length} problem(s); nothing was written`,
            issues: issues.map((i) => ({
              path: readablePath(i, overlay, this.prefix),
              message: readableText(i.message, overlay, this.prefix),
              code: i.code,
            })),
          },
        },
      };
    }
    const text = JSON.stringify({ id, ...value });
    this.prechecked = { key, text, generation: this.generation };
    const res = await this.client
      .if(key, 'Mod', '==', expected)
      .then(this.client.put(key).value(text))
      .else(this.client.get(key))
      .commit();
    const rev = String(res.header.revision);
    if (!res.succeeded) return conflict(key, expected, actualRev(res));
    const t2 = performance.now();
    await this.waitApplied(Number(rev));
    const ms = (x: number, y: number): number => Math.round(y - x);
    this.log.info(
      {
        store_key: key,
        mod_revision: Number(rev),
        check_ms: ms(t0, t1),
        write_ms: ms(t1, t2),
        seen_ms: ms(t2, performance.now()),
      },
      'config store object written',
    );
    return {
      status: expected === '0' ? 201 : 200,
      body: { collection, id, mod_revision: Number(rev), object: obj.value },
      headers: { etag: `"${rev}"` },
    };
  }

  /** Delete `collection/id` if its mod revision is still `ifMatch` (or the one seen). */
  async delete(collection: StoredCollection, id: string, ifMatch?: string): Promise<WriteOutcome | 'missing'> {
    const key = keyOf(this.prefix, collection, id);
    const now = this.latest.get(key);
    if (!now) return 'missing';
    const expected = ifMatch ?? ('obj' in now ? now.obj.modRevision : now.modRevision);
    const res = await this.client
      .if(key, 'Mod', '==', expected)
      .then(this.client.delete().key(key))
      .else(this.client.get(key))
      .commit();
    if (!res.succeeded) return conflict(key, expected, actualRev(res));
    await this.waitApplied(Number(res.header.revision));
    return { status: 200, body: { collection, id, deleted: true, revision: Number(res.header.revision) } };
  }

  async close(): Promise<void> {
    this.closed = true;
    const w = this.watcher;
    this.watcher = undefined;
    await Promise.race([w?.cancel().catch(() => undefined), sleep(500)]);
    this.client.close();
  }
}

function conflict(key: string, expected: string, actual: string | undefined): WriteOutcome {
  const now =
    actual === undefined ? 'it changed meanwhile' : actual === '0' ? 'it does not exist' : `it is at ${actual}`;
  return {
    status: 412,
    body: {
      error: {
        code: 'TLSGATE_E_STORE_CONFLICT',
        message: `${key} was expected at mod revision ${expected} but ${now}: read it again and retry`,
      },
    },
    ...(actual && actual !== '0' ? { headers: { etag: `"${actual}"` } } : {}),
  };
}

/** Mod revision of the key in a failed transaction's else branch ('0': absent). */
function actualRev(res: ITxnResponse): string {
  return res.responses[0]?.response_range?.kvs[0]?.mod_revision ?? '0';
}

function show(i: ConfigIssue, inner: string): string {
  return `${inner ? `${inner}: ` : ''}${i.message} [${i.code}]`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
