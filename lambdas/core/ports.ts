import type { ClientConfig } from './config.js';

/** Milliseconds since the epoch. Injected so the core is tested with a fake clock. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

export interface ClientCredentials {
  clientId: string;
  clientSecret: string;
}

/** Where a client's id and secret live (Secrets Manager in production). */
export interface SecretSource {
  getCredentials(clientName: string, client: ClientConfig): Promise<ClientCredentials>;
}

/** A token as the broker keeps it. Times are epoch milliseconds. */
export interface CachedToken {
  accessToken: string;
  tokenType: string;
  scope: string;
  issuedAt: number;
  expiresAt: number;
}

/** The shared, persistent cache tier (DynamoDB in production). */
export interface TokenCache {
  get(cacheKey: string): Promise<CachedToken | undefined>;
  put(cacheKey: string, token: CachedToken): Promise<void>;
}

export interface TokenRequest {
  clientName: string;
  client: ClientConfig;
  credentials: ClientCredentials;
  /** Space-delimited, normalized; empty when no scope parameter is sent. */
  scope: string;
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
