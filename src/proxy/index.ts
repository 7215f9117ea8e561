// The proxy stage: engine request handler → UpstreamSet.handle → upstream node.
export { UpstreamSet, type UpstreamHealthView } from './upstream-set';
export type { ClientIdentity, ProxyContext, ProxyLogger, ProxyOptions, SslLookup } from './options';
export { PROXY_DEFAULTS } from './options';
export type { NodeHealthView } from './node-health';
export { sendError } from './error-response';
export { DEFAULT_IDENTITY_HEADERS } from './headers';
export { serve, type StageListener, type StageState } from './stage';
export type { ConnFacts, Exchange, ResponseWriter } from './exchange';
export { CLOSING, NodeExchange } from './node-exchange';
export { checkAuthority, type AuthorityRefusal } from './authority';
export { servingLookup, type ServingLookup } from './serving-lookup';
export { rfc4514 } from './client-dn';
