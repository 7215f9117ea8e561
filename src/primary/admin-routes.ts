// Admin endpoints over the primary's state.
import type { Handler } from '../admin/server';
import type { Primary } from './primary';

export function adminRoutes(p: Primary): { routes: Record<string, Handler>; open: Record<string, Handler> } {
  return {
    open: {
      'GET /healthz': async () => ({ status: 200, body: { ok: true, version: p.status().version } }),
    },
    routes: {
      'GET /v1/status': async () => ({ status: 200, body: p.status() }),
      'POST /v1/reload': async () => {
        const r = await p.reload('admin');
        if (r.ok) await p.waitForAcks(r.version);
        return { status: r.ok ? 200 : 422, body: r };
      },
    },
  };
}
