// The one cache of "which SSL object serves this name" (the stage's authority rule and the
// HTTP/2 coalescing check read it): over a real SNI map patched in place as a delta does,
// an answer never outlives the version it was given under, and client Hosts cannot grow it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SniMap } from '../src/routing/sni-map';
import { servingLookup } from '../src/proxy/serving-lookup';
import type { SslSnapshot } from '../src/snapshot/types';

const mk = (id: string, snis: string[], ca?: string): SslSnapshot => {
  const tls: Omit<SslSnapshot, 'id' | 'snis' | 'hash'> = {
    type: 'server', pairs: [], clientDepth: 1, protocols: ['TLSv1.2', 'TLSv1.3'], ciphers: '',
  };
  return { ...tls, id, snis, hash: id, ...(ca !== undefined ? { clientCa: ca } : {}) };
};

test('a name moved by a delta (state patched in place, version bumped) is answered anew', () => {
  const shop = mk('shop', ['*.shop.test']);
  const fallback = mk('fallback', ['fallback.test']);
  const table: Array<[string, string]> = [['*.shop.test', 'shop'], ['fallback.test', 'fallback']];
  const state = { version: 1, sni: new SniMap([shop, fallback], table) };
  const lookup = servingLookup(state);
  assert.equal(servingLookup(state), lookup, 'one lookup per state object');
  assert.equal(lookup.get('pay.shop.test', undefined)?.id, 'shop');
  assert.equal(lookup.get('other.test', undefined), null);
  assert.equal(lookup.get('other.test', 'fallback')?.id, 'fallback', 'default_ssl answers apart');

  const secure = mk('secure', ['pay.shop.test'], 'CA');
  state.sni.patch([{ id: 'secure', ssl: secure, before: [], after: ['pay.shop.test'] }]);
  // Same version: the cached answer stands (what a delta's bump is for).
  assert.equal(lookup.get('pay.shop.test', undefined)?.id, 'shop');
  state.version = 2;
  assert.equal(lookup.get('pay.shop.test', undefined)?.id, 'secure');
  assert.equal(lookup.get('pay.shop.test', undefined)?.clientCa, 'CA');

  state.sni.patch([{ id: 'secure', ssl: undefined, before: ['pay.shop.test'], after: [] }]);
  state.version = 3;
  assert.equal(lookup.get('pay.shop.test', undefined)?.id, 'shop');

  // A full snapshot is a new state object: a lookup of its own.
  const next = { version: 3, sni: new SniMap([fallback], [['fallback.test', 'fallback']]) };
  assert.notEqual(servingLookup(next), lookup);
  assert.equal(servingLookup(next).get('pay.shop.test', undefined), null);
});

test('client Hosts do not grow the cache: past its bound it starts over and still answers right', () => {
  const shop = mk('shop', ['*.shop.test']);
  const sni = new SniMap([shop], [['*.shop.test', 'shop']]);
  let asked = 0;
  const counting = {
    version: 1,
    sni: Object.assign(Object.create(sni) as SniMap, {
      lookup: (host: string, def?: string) => {
        asked++;
        return sni.lookup(host, def);
      },
    }),
  };
  const lookup = servingLookup(counting);
  for (let i = 0; i < 5000; i++) assert.equal(lookup.get(`n${i}.shop.test`, undefined)?.id, 'shop');
  assert.equal(asked, 5000);
  // The last names asked are still cached; the first ones were dropped with a start-over.
  lookup.get('n4999.shop.test', undefined);
  assert.equal(asked, 5000);
  lookup.get('n0.shop.test', undefined);
  assert.equal(asked, 5001);
});
