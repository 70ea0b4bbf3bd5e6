import { TokenBrokerError } from './errors.js';
import { createHttpTransport, type HttpTransportOptions } from './http-transport.js';
import { createLambdaTransport, type LambdaTransportOptions } from './lambda-transport.js';
import { normalizeScope } from './protocol.js';
import type { Transport, TransportRequest } from './transport.js';

export const defaultRefreshWindowSeconds = 60;

export interface TokenBrokerClientOptions {
  transport: HttpTransportOptions | LambdaTransportOptions;
  /** A cached token is reused while more than this many seconds of its lifetime remain. Default 60. */
  refreshWindowSeconds?: number;
  /** Milliseconds since the epoch; the cache's time source. Default Date.now. SigV4 always uses real time. */
  clock?: () => number;
  /** The fetch the HTTP transport uses. Default the global fetch. */
  fetch?: typeof fetch;
}

export interface GetTokenOptions {
  /** The client (registry name) whose token is wanted; also the Lambda alias invoked. */
  client: string;
  /** Space-delimited scopes; absent means the client's default scope. "b a a" and "a b" are the same request. */
  scope?: string;
  /** The token request's `audience` (Auth0's API identifier): one the client lists; absent, its default. */
  audience?: string;
  /** An RFC 8707 `resource` indicator the client lists; absent, its default. */
  resource?: string;
}

export interface BrokerToken {
  accessToken: string;
  tokenType: 'Bearer';
  /** The scope the broker granted, space-delimited. */
  scope: string;
  /** When the token expires, on the client's clock: the time the request was sent plus expires_in. */
  expiresAt: number;
}

export interface TokenBrokerClient {
  /** A token from the in-process cache, or from the broker; rejects with TokenBrokerError. */
  getToken(options: GetTokenOptions): Promise<BrokerToken>;
  /** Forgets every cached token; requests already in flight still answer their callers but are not cached. */
  clear(): void;
}

/**
 * The caller side of token-broker: fetch a client's token over the SigV4-signed HTTP API or by invoking the
 * client's alias, and keep it in process until its refresh window. Concurrent calls for the same client and
 * scope set share one request; failures are not cached, so the next call asks again. There are no retries.
 */
export function createTokenBrokerClient(options: TokenBrokerClientOptions): TokenBrokerClient {
  const refreshWindowSeconds = options.refreshWindowSeconds ?? defaultRefreshWindowSeconds;
  if (!Number.isFinite(refreshWindowSeconds) || refreshWindowSeconds < 0) {
    throw new TypeError('refreshWindowSeconds must be a finite number >= 0');
  }
  const refreshWindowMs = refreshWindowSeconds * 1000;
  const clock = options.clock ?? Date.now;
  const transport: Transport =
    options.transport.kind === 'http'
      ? createHttpTransport(options.transport, options.fetch)
      : createLambdaTransport(options.transport);

  const cache = new Map<string, BrokerToken>();
  const inFlight = new Map<string, Promise<BrokerToken>>();
  // Bumped by clear(), so that a request started before it cannot fill the cache after it.
  let generation = 0;

  const usable = (token: BrokerToken) => token.expiresAt - clock() > refreshWindowMs;

  function prune(): void {
    for (const [key, token] of cache) if (!usable(token)) cache.delete(key);
  }

  async function fetchAndCache(key: string, request: TransportRequest): Promise<BrokerToken> {
    const started = generation;
    const answer = await transport.fetchToken(request, clock);
    const token: BrokerToken = Object.freeze({
      accessToken: answer.body.access_token,
      tokenType: answer.body.token_type,
      scope: answer.body.scope,
      expiresAt: answer.sentAt + answer.body.expires_in * 1000,
    });
    if (started === generation) {
      prune();
      if (usable(token)) cache.set(key, token);
    }
    return token;
  }

  return {
    getToken({ client, scope, audience, resource }: GetTokenOptions): Promise<BrokerToken> {
      if (typeof client !== 'string' || client === '') {
        return Promise.reject(new TokenBrokerError('invalid_request', 'client must be a non-empty string'));
      }
      for (const [field, value] of [
        ['scope', scope],
        ['audience', audience],
        ['resource', resource],
      ] as const) {
        if (value !== undefined && typeof value !== 'string') {
          return Promise.reject(new TokenBrokerError('invalid_request', `${field} must be a string`, { client }));
        }
      }
      // The broker normalizes the same way, so the normalized set is what it is asked for.
      const normalized = scope === undefined ? undefined : normalizeScope(scope).join(' ');
      const request: TransportRequest = {
        client,
        ...(normalized === undefined ? {} : { scope: normalized }),
        ...(audience === undefined ? {} : { audience }),
        ...(resource === undefined ? {} : { resource }),
      };
      // An absent field (the client's default) and any named value never share a key.
      const key = JSON.stringify([client, normalized ?? null, audience ?? null, resource ?? null]);

      const cached = cache.get(key);
      if (cached !== undefined) {
        if (usable(cached)) return Promise.resolve(cached);
        cache.delete(key);
      }
      const pending = inFlight.get(key);
      if (pending !== undefined) return pending;

      const fetching = fetchAndCache(key, request).finally(() => {
        if (inFlight.get(key) === fetching) inFlight.delete(key);
      });
      inFlight.set(key, fetching);
      return fetching;
    },
    clear(): void {
      generation += 1;
      cache.clear();
      inFlight.clear();
    },
  };
}
