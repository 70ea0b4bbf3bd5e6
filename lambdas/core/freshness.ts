import { BrokerError } from './errors.js';
import type { CachedToken } from './ports.js';

/** The largest `minTtl` a caller may ask for, in seconds: a day. */
export const maxMinTtlSeconds = 86_400;
/**
 * A forced refresh accepts any token of the key issued this recently: the one another caller's forced refresh
 * (in any container, through the table) just fetched. So however many callers force at once, and however often
 * one of them retries, a key costs the provider at most one call per this interval.
 */
export const forceRefreshIntervalSeconds = 30;

/** What a caller asked of its token besides the key: how long it must still live, and whether it was refused. */
export interface RequestedFreshness {
  /** Seconds the token must still be valid for; a whole number from 0 to maxMinTtlSeconds. */
  minTtl?: unknown;
  /** The caller's token was refused (a 401 from the resource server): do not hand out the same one again. */
  forceRefresh?: unknown;
}

/**
 * A requirement on the token served, beyond the broker's own refresh window. Absent fields require nothing;
 * an empty object means an ordinary request.
 */
export interface Freshness {
  /** Served only if issued at or after this time (ms since the epoch): a forced refresh. */
  notIssuedBefore?: number;
  /** Served only with this much lifetime left, or half its lifetime for a token issued for less than twice this. */
  minRemainingMs?: number;
}

/** A caller's minTtl, checked: a bad one is an invalid_request that names the field. */
export function minTtlOf(value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > maxMinTtlSeconds) {
    throw new BrokerError('invalid_request', `minTtl must be a whole number of seconds from 0 to ${maxMinTtlSeconds}`);
  }
  return value;
}

export function forceRefreshOf(value: unknown): boolean {
  if (typeof value !== 'boolean') throw new BrokerError('invalid_request', 'forceRefresh must be true or false');
  return value;
}

/** The caller's minTtl and forceRefresh as a requirement on the token served. */
export function resolveFreshness(requested: RequestedFreshness, now: number): Freshness {
  const freshness: Freshness = {};
  if (requested.minTtl !== undefined) {
    const minTtl = minTtlOf(requested.minTtl);
    if (minTtl > 0) freshness.minRemainingMs = minTtl * 1000;
  }
  if (requested.forceRefresh !== undefined && forceRefreshOf(requested.forceRefresh)) {
    freshness.notIssuedBefore = now - forceRefreshIntervalSeconds * 1000;
  }
  return freshness;
}

export function asksForFreshness(freshness: Freshness): boolean {
  return freshness.notIssuedBefore !== undefined || freshness.minRemainingMs !== undefined;
}

/**
 * Whether a token meets the caller's requirement. A minTtl beyond half the token's lifetime is met by a token in
 * its first half: no token the provider issues could do better, and a caller asking more than the provider gives
 * must not make every request a call to it.
 */
export function meetsFreshness(token: CachedToken, freshness: Freshness, now: number): boolean {
  if (freshness.notIssuedBefore !== undefined && token.issuedAt < freshness.notIssuedBefore) return false;
  if (freshness.minRemainingMs !== undefined) {
    const needed = Math.min(freshness.minRemainingMs, (token.expiresAt - token.issuedAt) / 2);
    if (token.expiresAt - now < needed) return false;
  }
  return true;
}
