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
  /**
   * Seconds the token must still be valid for (a whole number up to 86400), say for a long job. A token in the
   * first half of its lifetime always qualifies, so asking more than the provider gives costs no extra calls.
   */
  minTtl?: number;
  /**
   * The resource server refused the token (a 401): skip the in-process cache and have the broker hand out a
   * newer one. The broker calls its provider at most once per client and scope set every 30 seconds across its
   * whole fleet, so a retry loop cannot hammer it.
   */
  forceRefresh?: boolean;
}

/** A token in the cache, with the lifetime the broker gave it, which minTtl is weighed against. */
interface Cached {
  token: BrokerToken;
  lifetimeMs: number;
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

  const cache = new Map<string, Cached>();
  const inFlight = new Map<string, Promise<BrokerToken>>();
  // Bumped by clear(), so that a request started before it cannot fill the cache after it.
  let generation = 0;

  const usable = ({ token }: Cached) => token.expiresAt - clock() > refreshWindowMs;
  // The broker's own rule, so that a minTtl it would meet from its cache is met here without asking it.
  const meetsMinTtl = ({ token, lifetimeMs }: Cached, minTtlMs: number) =>
    token.expiresAt - clock() >= Math.min(minTtlMs, lifetimeMs / 2);

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
    const entry: Cached = { token, lifetimeMs: answer.body.expires_in * 1000 };
    if (started === generation) {
      prune();
      if (usable(entry)) cache.set(key, entry);
    }
    return token;
  }

  return {
    getToken({ client, scope, audience, resource, minTtl, forceRefresh }: GetTokenOptions): Promise<BrokerToken> {
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
      if (minTtl !== undefined && (typeof minTtl !== 'number' || !Number.isInteger(minTtl) || minTtl < 0)) {
        return Promise.reject(
          new TokenBrokerError('invalid_request', 'minTtl must be a whole number of seconds', { client }),
        );
      }
      if (forceRefresh !== undefined && typeof forceRefresh !== 'boolean') {
        return Promise.reject(
          new TokenBrokerError('invalid_request', 'forceRefresh must be true or false', { client }),
        );
      }
      const minTtlMs = (minTtl ?? 0) * 1000;
      // The broker normalizes the same way, so the normalized set is what it is asked for.
      const normalized = scope === undefined ? undefined : normalizeScope(scope).join(' ');
      const request: TransportRequest = {
        client,
        ...(normalized === undefined ? {} : { scope: normalized }),
        ...(audience === undefined ? {} : { audience }),
        ...(resource === undefined ? {} : { resource }),
        ...(minTtlMs === 0 ? {} : { minTtl }),
        ...(forceRefresh === true ? { forceRefresh: true } : {}),
      };
      // An absent field (the client's default) and any named value never share a key.
      const key = JSON.stringify([client, normalized ?? null, audience ?? null, resource ?? null]);

      if (forceRefresh !== true) {
        const cached = cache.get(key);
        if (cached !== undefined) {
          if (usable(cached) && meetsMinTtl(cached, minTtlMs)) return Promise.resolve(cached.token);
          if (!usable(cached)) cache.delete(key);
        }
      }
      // Requests that ask for more than the cache had share a request only with ones that ask the same: an
      // ordinary one in flight may be answered with the very token a forced refresh must not get back.
      const flight = JSON.stringify([key, minTtlMs, forceRefresh === true]);
      const pending = inFlight.get(flight);
      if (pending !== undefined) return pending;

      const fetching = fetchAndCache(key, request).finally(() => {
        if (inFlight.get(flight) === fetching) inFlight.delete(flight);
      });
      inFlight.set(flight, fetching);
      return fetching;
    },
    clear(): void {
      generation += 1;
      cache.clear();
      inFlight.clear();
    },
  };
}
