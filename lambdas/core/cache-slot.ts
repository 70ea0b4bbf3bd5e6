/**
 * One client's cache key: what the memory and shared tiers and the lease are keyed by, with the client it belongs
 * to for revocation, metrics and logs (the key is never parsed for it).
 */
export interface CacheSlot {
  clientName: string;
  /** cacheKeyOf(clientName, scopes, parameters). */
  key: string;
}
