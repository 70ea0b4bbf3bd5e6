import type { JsonWebKey } from 'node:crypto';
import type { CounterMetricName } from '../contract.js';
import type { ClientConfig, WebIdentitySigningAlgorithm } from './config.js';
import type { Cooldown } from './cooldown.js';

/** Milliseconds since the epoch, and waiting. Injected so the core is tested with a fake clock. */
export interface Clock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

export { type AssertionAlgorithm, assertionAlgorithms } from '../contract.js';

/** A private JWK (RSA, or EC P-256 or P-384) with the kid the server knows it by. */
export interface PrivateJwk extends JsonWebKey {
  kid: string;
  /** The certificate chain of the key, base64 DER, leaf first (RFC 7517 section 4.7). */
  x5c?: string[];
  /** The SHA-256 thumbprint of the key's certificate, base64url (RFC 7517 section 4.9). */
  'x5t#S256'?: string;
}

/** A shared secret (client_secret_post, client_secret_basic) or a private key (private_key_jwt). */
export type ClientCredentials =
  | {
      clientId: string;
      clientSecret: string;
      privateKeyJwk?: undefined;
      kmsKeyArn?: undefined;
      webIdentity?: undefined;
    }
  | {
      clientId: string;
      privateKeyJwk: PrivateJwk;
      clientSecret?: undefined;
      kmsKeyArn?: undefined;
      webIdentity?: undefined;
    }
  /** private_key_jwt with a KMS key: the broker holds no private material at all, only the key's ARN. */
  | {
      clientId: string;
      kmsKeyArn: string;
      clientSecret?: undefined;
      privateKeyJwk?: undefined;
      webIdentity?: undefined;
    }
  /** private_key_jwt with an assertion STS signs for the function's role: nothing secret exists at all. */
  | {
      clientId: string;
      webIdentity: { audience: string; algorithm: WebIdentitySigningAlgorithm };
      clientSecret?: undefined;
      privateKeyJwk?: undefined;
      kmsKeyArn?: undefined;
    };

export interface SecretReadOptions {
  /** Bypass the bounded cache: the secret may just have been rotated. */
  refresh?: boolean;
}

/** Where a client's id and secret live (Secrets Manager in production). */
export interface SecretSource {
  getCredentials(clientName: string, client: ClientConfig, options?: SecretReadOptions): Promise<ClientCredentials>;
  /**
   * The client's other live credentials while a rotation is under way, in the order to try them: the pending
   * version (written, not yet current) and the previous one (current until the rotation finished). Empty outside
   * a rotation, and when they cannot be read: they are a fallback, never a reason to fail.
   */
  getRotationCredentials(clientName: string, client: ClientConfig): Promise<RotationCredentials[]>;
}

export interface RotationCredentials {
  stage: 'pending' | 'previous';
  credentials: ClientCredentials;
}

/**
 * The deployment's sealing key (a random secret in Secrets Manager in production): what tokens in the table are
 * sealed under, so that the table alone opens nothing. Cached and re-read like client secrets.
 */
export interface SealingKeySource {
  getSealingKey(): Promise<Uint8Array>;
}

/** A token as the broker keeps it in memory. Times are epoch milliseconds. */
export interface CachedToken {
  accessToken: string;
  tokenType: string;
  scope: string;
  issuedAt: number;
  expiresAt: number;
}

/** A token as the shared tier holds it: sealed, with only its expiry (epoch ms) in the clear for TTL. */
export interface StoredToken {
  format: number;
  sealed: Uint8Array;
  expiresAt: number;
}

/** What became of a token offered to the table: kept, not kept (a newer one is there), or refused as revoked. */
export type PutOutcome = { outcome: 'stored' } | { outcome: 'not-stored' } | { outcome: 'revoked'; revokedAt: number };

/** Who holds the right to call the token endpoint for a key, and until when (epoch ms). */
export interface TokenLease {
  holder: string;
  until: number;
}

/**
 * The shared, persistent tier (DynamoDB in production): sealed tokens, and short leases so that one
 * container at a time calls the token endpoint for a key.
 */
export interface TokenCache {
  get(cacheKey: string): Promise<StoredToken | undefined>;
  /**
   * Keeps whichever of the stored and the offered token expires later, and never a token of the client issued
   * (its request to the provider started) at or before the client's revocation marker: 'revoked' then, with the
   * marker, and nothing of it is left for another container to read.
   */
  put(cacheKey: string, token: StoredToken, issued: { clientName: string; issuedAt: number }): Promise<PutOutcome>;
  /** True when this holder now has the lease until `until`: none existed, it had lapsed by `now`, or it was this holder's. */
  acquireLease(cacheKey: string, holder: string, now: number, until: number): Promise<boolean>;
  releaseLease(cacheKey: string, holder: string): Promise<void>;
  /** The key's lease as stored, lapsed or not; undefined once released (or never taken). */
  readLease(cacheKey: string): Promise<TokenLease | undefined>;
  /** Deletes every stored token of the client and records when, so other containers drop their copies. */
  revokeClient(clientName: string, at: number): Promise<number>;
  /** When the client's tokens were last revoked (epoch ms), if ever. */
  revokedAt(clientName: string): Promise<number | undefined>;
  /** The client's last cooldown, standing or lapsed; undefined once cleared (or never written). */
  readCooldown(clientName: string): Promise<Cooldown | undefined>;
  /** Records a cooldown every container honours; kept a while after it lapses, so a next one can double. */
  writeCooldown(clientName: string, cooldown: Cooldown): Promise<void>;
  /** The provider answered again: the next failure starts the pauses over. */
  clearCooldown(clientName: string): Promise<void>;
  /**
   * Counts one token-endpoint call of the client in the window starting at `window.start`, unless `limit` calls
   * are counted there already: the count with this call, or undefined when it is refused. Atomic across
   * containers; the count is forgotten some time after `window.end`.
   */
  countIssuance(clientName: string, window: { start: number; end: number }, limit: number): Promise<number | undefined>;
}

export interface TokenRequest {
  clientName: string;
  client: ClientConfig;
  credentials: ClientCredentials;
  /** Space-delimited, normalized, never empty: the broker always names the scope it asks for. */
  scope: string;
  /** Sent as the `audience` parameter (Auth0), when the client allows it. */
  audience?: string;
  /** Sent as the RFC 8707 `resource` parameter, when the client allows it. */
  resource?: string;
  /**
   * Epoch ms (the broker's clock) by which the whole exchange, discovery and retries included, must be over:
   * the lease on the key ends a margin after it. Absent: only the adapter's own budget applies.
   */
  deadline?: number;
}

/** What the token endpoint granted, already validated by the adapter. */
export interface IssuedToken {
  accessToken: string;
  tokenType: string;
  expiresIn: number;
  /** The scope the server says it granted; undefined when it omitted the parameter. */
  scope: string | undefined;
}

export interface TokenEndpoint {
  fetchToken(request: TokenRequest): Promise<IssuedToken>;
}

/** Structured logging, satisfied by the Powertools Logger; attributes never hold a token or a secret. */
export interface BrokerLogger {
  debug(message: string, attributes: Record<string, unknown>): void;
  info(message: string, attributes: Record<string, unknown>): void;
  warn(message: string, attributes: Record<string, unknown>): void;
  error(message: string, attributes: Record<string, unknown>): void;
}

export const silentLogger: BrokerLogger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};

/** The counters the broker raises: the contract's metrics emitted by the core (each described there). */
export type BrokerMetric = CounterMetricName;

/** Counters the broker raises (EMF metrics through Powertools in production). */
export interface BrokerMetrics {
  count(metric: BrokerMetric, client: string): void;
  /** Milliseconds one call to the token endpoint took, retries included. */
  upstreamLatency(ms: number, client: string): void;
  /** The share (percent) of its hourly issuance budget a client has used, with the call just counted. */
  issuanceBudgetUsed(percent: number, client: string): void;
}

export const noMetrics: BrokerMetrics = {
  count() {},
  upstreamLatency() {},
  issuanceBudgetUsed() {},
};
