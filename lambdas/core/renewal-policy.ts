import type { CachedToken } from './ports.js';

/**
 * How long before expiry a token stops being served: the refresh window, scaled down to a quarter of the
 * lifetime for tokens that live less than four windows, or a token issued for the window or less would never
 * be served from a cache at all.
 */
export function servableWindowMs(lifetimeMs: number, refreshWindowSeconds: number): number {
  return Math.min(refreshWindowSeconds * 1000, lifetimeMs / 4);
}

/**
 * With refresh ahead on, renewal falls at least this long (a tenth of the lifetime for short tokens) before the
 * token stops being served: while it runs, or fails and the fleet's cooldown passes, every other caller is still
 * served the current token. Without it a token whose refresh-ahead share is no more than the window (300 s
 * tokens and a 60 s window) would be renewed only once it could no longer be served, and every caller would
 * wait on the renewal, or fail with it.
 */
export const renewalBridgeMaxSeconds = 30;

/** The broker's settings that place a token's serving and renewal within its lifetime. */
export interface RenewalSettings {
  /** A token is handed out only while at least this much of its lifetime remains. */
  refreshWindowSeconds: number;
  /** Renewal starts when this share of a token's lifetime remains, bounded by refreshAheadMaxMs; 0 switches it off. */
  refreshAheadFraction: number;
  refreshAheadMaxMs: number;
}

/**
 * How long before expiry renewal is due: a share of the lifetime (bounded), and never later than the window
 * less the bridge.
 */
export function renewalLeadMs(lifetimeMs: number, settings: RenewalSettings): number {
  const bridgeMs =
    settings.refreshAheadFraction === 0
      ? 0
      : Math.min(renewalBridgeMaxSeconds * 1000, lifetimeMs / 10, settings.refreshAheadMaxMs);
  return Math.max(
    servableWindowMs(lifetimeMs, settings.refreshWindowSeconds) + bridgeMs,
    Math.min(lifetimeMs * settings.refreshAheadFraction, settings.refreshAheadMaxMs),
  );
}

/**
 * When a token may be handed out, and when it is due for renewal, at a given moment. What a caller asks of it
 * (minTtl, forceRefresh) is freshness.ts; whether its client was revoked since is revocation.ts.
 */
export class RenewalPolicy {
  constructor(private readonly settings: RenewalSettings) {}

  /** Still valid, and outside the refresh window (scaled down for short-lived tokens). */
  isServable(token: CachedToken, now: number): boolean {
    const remaining = token.expiresAt - now;
    return (
      remaining > 0 &&
      remaining >= servableWindowMs(token.expiresAt - token.issuedAt, this.settings.refreshWindowSeconds)
    );
  }

  /** Close enough to expiry that the next caller renews it (the others are still served it meanwhile). */
  isDue(token: CachedToken, now: number): boolean {
    return token.expiresAt - now < renewalLeadMs(token.expiresAt - token.issuedAt, this.settings);
  }
}
