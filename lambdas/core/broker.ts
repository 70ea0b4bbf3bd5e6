import type { ClientConfig, ClientRegistry } from './config.js';
import { BrokerError } from './errors.js';
import type { BrokerLogger, CachedToken, Clock, SecretSource, TokenCache, TokenEndpoint } from './ports.js';
import { silentLogger, systemClock } from './ports.js';
import { resolveScope } from './scope.js';

export const defaultRefreshWindowSeconds = 60;

export interface TokenBrokerOptions {
  clients: ClientRegistry;
  secrets: SecretSource;
  /** The shared tier behind the in-memory one. */
  cache: TokenCache;
  endpoint: TokenEndpoint;
  clock?: Clock;
  logger?: BrokerLogger;
  /** A cached token is handed out only while at least this much of its lifetime remains. */
  refreshWindowSeconds?: number;
}

export interface GetTokenRequest {
  client: string;
  /** Space-delimited; absent means the client's default scope. */
  scope?: string;
}

/** Exactly what callers receive: nothing else of the upstream answer is passed on. */
export interface TokenResponse {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  scope: string;
}

/** Where the token came from: the container's memory, the shared table, or the token endpoint. */
export type CacheOutcome = 'memory' | 'table' | 'fetched';

export interface TokenResult {
  response: TokenResponse;
  cache: CacheOutcome;
  /** The normalized scope set that was requested (the cache key's scope part). */
  requestedScope: string;
}

interface Loaded {
  token: CachedToken;
  cache: CacheOutcome;
}

export function cacheKeyOf(clientName: string, scopes: readonly string[]): string {
  return `${clientName}#${scopes.join(' ')}`;
}

export class TokenBroker {
  readonly refreshWindowSeconds: number;
  private readonly clients: ClientRegistry;
  private readonly secrets: SecretSource;
  private readonly cache: TokenCache;
  private readonly endpoint: TokenEndpoint;
  private readonly clock: Clock;
  private readonly logger: BrokerLogger;
  private readonly memory = new Map<string, CachedToken>();
  private readonly inFlight = new Map<string, Promise<Loaded>>();

  constructor(options: TokenBrokerOptions) {
    const window = options.refreshWindowSeconds ?? defaultRefreshWindowSeconds;
    if (!Number.isInteger(window) || window < 0) {
      throw new RangeError('refreshWindowSeconds must be a non-negative integer');
    }
    this.refreshWindowSeconds = window;
    this.clients = options.clients;
    this.secrets = options.secrets;
    this.cache = options.cache;
    this.endpoint = options.endpoint;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
  }

  hasClient(name: string): boolean {
    return Object.hasOwn(this.clients, name);
  }

  async getToken(request: GetTokenRequest): Promise<TokenResult> {
    const client = this.clientNamed(request.client);
    const scopes = resolveScope(request.client, client, request.scope);
    const key = cacheKeyOf(request.client, scopes);
    const requestedScope = scopes.join(' ');

    const remembered = this.memory.get(key);
    if (remembered !== undefined && this.isServable(remembered)) {
      return { response: this.present(remembered), cache: 'memory', requestedScope };
    }
    const loaded = await this.singleFlight(key, () => this.load(request.client, client, scopes, key));
    return { response: this.present(loaded.token), cache: loaded.cache, requestedScope };
  }

  private clientNamed(name: string): ClientConfig {
    if (!this.hasClient(name)) throw new BrokerError('unknown_client', `no client named ${JSON.stringify(name)}`);
    return this.clients[name] as ClientConfig;
  }

  private isServable(token: CachedToken): boolean {
    return token.expiresAt - this.clock.now() >= this.refreshWindowSeconds * 1000;
  }

  /** One load per key at a time in this container; every concurrent caller shares its outcome, failures included. */
  private singleFlight(key: string, load: () => Promise<Loaded>): Promise<Loaded> {
    const pending = this.inFlight.get(key);
    if (pending !== undefined) return pending;
    const started = load().finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, started);
    return started;
  }

  private async load(clientName: string, client: ClientConfig, scopes: string[], key: string): Promise<Loaded> {
    const stored = await this.readShared(clientName, key);
    if (stored !== undefined && this.isServable(stored)) {
      this.remember(key, stored);
      return { token: stored, cache: 'table' };
    }

    const credentials = await this.secrets.getCredentials(clientName, client);
    // Lifetime counts from before the request is sent, so the broker never believes a token lives longer than it does.
    const issuedAt = this.clock.now();
    const issued = await this.endpoint.fetchToken({ clientName, client, credentials, scope: scopes.join(' ') });
    const token: CachedToken = {
      accessToken: issued.accessToken,
      tokenType: 'Bearer',
      // RFC 6749 section 5.1: an omitted scope means the requested scope was granted as asked.
      scope: issued.scope ?? scopes.join(' '),
      issuedAt,
      expiresAt: issuedAt + issued.expiresIn * 1000,
    };
    this.remember(key, token);
    await this.writeShared(clientName, key, token);
    // A token fresh from the endpoint is handed to the callers who waited for it even when its whole
    // lifetime is shorter than the refresh window: no better token exists.
    return { token, cache: 'fetched' };
  }

  private async readShared(clientName: string, key: string): Promise<CachedToken | undefined> {
    try {
      return await this.cache.get(key);
    } catch (error) {
      this.logger.warn('token cache read failed; continuing without the shared cache', {
        client: clientName,
        errorName: errorName(error),
      });
      return undefined;
    }
  }

  private async writeShared(clientName: string, key: string, token: CachedToken): Promise<void> {
    try {
      await this.cache.put(key, token);
    } catch (error) {
      this.logger.warn('token cache write failed; the token is kept in memory only', {
        client: clientName,
        errorName: errorName(error),
      });
    }
  }

  private remember(key: string, token: CachedToken): void {
    const now = this.clock.now();
    for (const [otherKey, other] of this.memory) {
      if (other.expiresAt <= now) this.memory.delete(otherKey);
    }
    this.memory.set(key, token);
  }

  private present(token: CachedToken): TokenResponse {
    return {
      access_token: token.accessToken,
      token_type: 'Bearer',
      expires_in: Math.max(0, Math.floor((token.expiresAt - this.clock.now()) / 1000)),
      scope: token.scope,
    };
  }
}

function errorName(error: unknown): string {
  return error instanceof Error ? error.name : typeof error;
}
