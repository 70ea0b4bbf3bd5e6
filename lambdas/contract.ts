/**
 * What the construct, the function, the local server and the tests must agree on, stated once: the routes, the
 * metrics namespace and the length limits of what callers send. Each is imported from here; nothing restates it.
 * (packages/client is published on its own and keeps its own copy of the token route, checked by its tests.)
 */

/** The token route: POST fetches a client's token, DELETE drops its cached tokens. `{client}` is the registry name. */
export const tokenPath = (clientName: string) => `/clients/${clientName}/token`;
/** The hosted JWKS route, below the JWKS function's URL. */
export const jwksPath = (clientName: string) => `/clients/${clientName}/jwks.json`;

/** The CloudWatch namespace of every metric the function emits and every alarm and widget reads. */
export const metricsNamespace = 'TokenBroker';

/** The longest `scope` a caller may send (the API's request schema and the broker both refuse longer). */
export const maxScopeLength = 1024;
/** The longest `audience` or `resource` a caller may send, and a registry may list. */
export const maxTargetLength = 1024;
