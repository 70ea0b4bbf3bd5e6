import { randomUUID } from 'node:crypto';
import type { CacheSlot } from './cache-slot.js';
import { BrokerError } from './errors.js';
import type { BrokerLogger, BrokerMetrics, CachedToken, Clock, TokenCache, TokenLease } from './ports.js';
import type { TableFailureReport } from './shared-tier.js';

/**
 * The outcome of asking for a key's lease: held (or not knowable, the table failing: the container goes
 * ahead alone) with the deadline for the upstream work, or held by another container.
 */
export type GoAhead = { state: 'held' | 'unknown'; deadline: number };
export type LeaseAttempt = GoAhead | { state: 'taken' };

export interface LeasesOptions {
  cache: TokenCache;
  clock: Clock;
  metrics: BrokerMetrics;
  logger: BrokerLogger;
  reportFailure: TableFailureReport;
  /** How long the holder's upstream exchange may take: its deadline is this far from when it took the lease. */
  upstreamBudgetMs: number;
  /** How long a lease lasts: leaseMsFor(upstreamBudgetMs). */
  leaseMs: number;
  /** A waiter looks at the lease about this often (jittered between half and one and a half times it). */
  pollMs: number;
  /** A waiter looks this much past the lease it waits on, so that it sees that lease lapse before giving up. */
  waitSlackMs: number;
}

/**
 * The right to call the token endpoint for a key, one holder across the fleet at a time, kept in the table:
 * so that a cold key or a renewal costs the provider one call however many containers ask at once.
 */
export class Leases {
  private readonly containerId = randomUUID();
  private readonly cache: TokenCache;
  private readonly clock: Clock;
  private readonly metrics: BrokerMetrics;
  private readonly logger: BrokerLogger;
  private readonly reportFailure: TableFailureReport;
  private readonly upstreamBudgetMs: number;
  private readonly leaseMs: number;
  private readonly pollMs: number;
  private readonly waitSlackMs: number;

  constructor(options: LeasesOptions) {
    this.cache = options.cache;
    this.clock = options.clock;
    this.metrics = options.metrics;
    this.logger = options.logger;
    this.reportFailure = options.reportFailure;
    this.upstreamBudgetMs = options.upstreamBudgetMs;
    this.leaseMs = options.leaseMs;
    this.pollMs = options.pollMs;
    this.waitSlackMs = options.waitSlackMs;
  }

  /** A holder name of its own for one renewal: this container's, and unique to the renewal. */
  newHolder(): string {
    return `${this.containerId}/${randomUUID()}`;
  }

  /** Without the table the lease cannot be known; the container goes ahead alone (single flight still holds). */
  async acquire(slot: CacheSlot, holder: string): Promise<LeaseAttempt> {
    const now = this.clock.now();
    const deadline = now + this.upstreamBudgetMs;
    try {
      const held = await this.cache.acquireLease(slot.key, holder, now, now + this.leaseMs);
      return held ? { state: 'held', deadline } : { state: 'taken' };
    } catch (error) {
      this.reportFailure(slot.clientName, 'lease', error);
      return { state: 'unknown', deadline };
    }
  }

  async read(slot: CacheSlot): Promise<TokenLease | undefined | 'unreadable'> {
    try {
      return await this.cache.readLease(slot.key);
    } catch (error) {
      this.reportFailure(slot.clientName, 'lease read', error);
      return 'unreadable';
    }
  }

  async release(slot: CacheSlot, holder: string): Promise<void> {
    try {
      await this.cache.releaseLease(slot.key, holder);
    } catch (error) {
      // The lease lapses by itself.
      this.reportFailure(slot.clientName, 'lease release', error);
    }
  }

  /**
   * Waits while another container holds the lease. Each look reads the lease, then the token (lookForToken:
   * a usable token in the table, or undefined): a holder stores its token before it releases the lease, so a
   * released lease with no token after it means the holder failed, and its failure is answered without calling
   * again. A lease that lapses within one lease period of the wait (its holder died) is taken over by the one
   * waiter whose conditional write wins; the others wait on for the new holder, at most its upstream budget
   * more. Either way a request ends within what checkTimeBudget allows for. Resolves with the holder's token,
   * or with the lease when this container took it over.
   */
  async awaitHolder(
    slot: CacheSlot,
    holder: string,
    lookForToken: () => Promise<CachedToken | undefined>,
  ): Promise<CachedToken | GoAhead> {
    this.metrics.count('LeaseWaits', slot.clientName);
    const takeoverUntil = this.clock.now() + this.leaseMs + this.waitSlackMs;
    const giveUpAt = takeoverUntil + this.upstreamBudgetMs + this.waitSlackMs;
    for (;;) {
      await this.clock.sleep(this.pollMs / 2 + Math.random() * this.pollMs);
      const lease = await this.read(slot);
      const token = await lookForToken();
      if (token !== undefined) return token;
      if (lease === undefined) {
        throw new BrokerError(
          'unavailable',
          `another request for a token of client ${slot.clientName} just failed; retry in a moment`,
        );
      }
      const now = this.clock.now();
      if (lease !== 'unreadable' && lease.until < now && now < takeoverUntil) {
        const takeover = await this.acquire(slot, holder);
        if (takeover.state === 'held') {
          this.logger.info('took over the lapsed lease of another container', { client: slot.clientName });
          return takeover;
        }
      }
      if (this.clock.now() >= giveUpAt) {
        throw new BrokerError(
          'unavailable',
          `another request for a token of client ${slot.clientName} has not finished; retry in a moment`,
        );
      }
    }
  }
}
