import type { CacheSlot } from './cache-slot.js';
import type { CachedToken, Clock } from './ports.js';

/**
 * The tokens this container holds, per cache key: the first tier a request looks in, and the only one a warm
 * request touches. Knows nothing of revocation or freshness; the broker decides what to keep and serve.
 */
export class MemoryTier {
  private readonly entries = new Map<string, { clientName: string; token: CachedToken }>();

  constructor(private readonly clock: Clock) {}

  get(key: string): CachedToken | undefined {
    return this.entries.get(key)?.token;
  }

  /** Keeps the slot's token, replacing the one before, and lets go of every expired token while at it. */
  remember(slot: CacheSlot, token: CachedToken): void {
    const now = this.clock.now();
    for (const [otherKey, other] of this.entries) {
      if (other.token.expiresAt <= now) this.entries.delete(otherKey);
    }
    this.entries.set(slot.key, { clientName: slot.clientName, token });
  }

  /** Drops every token of the client issued at or before a revocation. */
  dropRevoked(clientName: string, revokedAt: number): void {
    for (const [key, entry] of this.entries) {
      if (entry.clientName === clientName && entry.token.issuedAt <= revokedAt) this.entries.delete(key);
    }
  }
}
