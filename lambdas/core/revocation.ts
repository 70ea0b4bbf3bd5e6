import { BrokerError } from './errors.js';
import type { CachedToken, Clock, TokenCache } from './ports.js';
import type { TableFailureReport } from './shared-tier.js';
import { SingleFlight } from './single-flight.js';

export interface RevocationsOptions {
  cache: TokenCache;
  clock: Clock;
  /** How long a look at a client's revocation marker holds before the next request looks again. */
  checkIntervalMs: number;
  /** Where a revoked client's tokens are dropped from: this container's memory. */
  memory: { dropRevoked(clientName: string, revokedAt: number): void };
  reportFailure: TableFailureReport;
}

/**
 * What this container knows of each client's revocation marker (the table's record of the last invalidation),
 * and when it last looked: a token issued at or before the marker is served by no tier and kept by none.
 */
export class Revocations {
  private readonly known = new Map<string, { revokedAt: number | undefined; checkedAt: number }>();
  private readonly looks = new SingleFlight<string, void>();
  private readonly cache: TokenCache;
  private readonly clock: Clock;
  private readonly checkIntervalMs: number;
  private readonly memory: RevocationsOptions['memory'];
  private readonly reportFailure: TableFailureReport;

  constructor(options: RevocationsOptions) {
    this.cache = options.cache;
    this.clock = options.clock;
    this.checkIntervalMs = options.checkIntervalMs;
    this.memory = options.memory;
    this.reportFailure = options.reportFailure;
  }

  isRevoked(clientName: string, token: CachedToken): boolean {
    const revokedAt = this.known.get(clientName)?.revokedAt;
    return revokedAt !== undefined && token.issuedAt <= revokedAt;
  }

  /**
   * The look at the table for a revocation, once the last one is older than the interval: awaited before
   * anything is served, because a container frozen between requests runs no background work. Within the
   * interval there is none, so a memory hit does no I/O. A container that never looked has nothing of the
   * client in memory: its first look is firstLook's, beside the table read whose token it may serve.
   */
  checkDue(clientName: string): Promise<void> | undefined {
    const pending = this.looks.pending(clientName);
    if (pending !== undefined) return pending;
    const known = this.known.get(clientName);
    if (known === undefined || this.clock.now() - known.checkedAt < this.checkIntervalMs) return undefined;
    return this.look(clientName);
  }

  /** The look a container takes before it serves a client's token from the table, unless it looked before. */
  firstLook(clientName: string): Promise<void> | undefined {
    return this.known.has(clientName) ? undefined : this.look(clientName);
  }

  /**
   * Reads the client's revocation marker; concurrent requests share one look (per client). When the table
   * cannot be read, memory keeps being served (reported as a table failure) and the next look comes an interval
   * later: a table outage must not take the broker down with it.
   */
  look(clientName: string): Promise<void> {
    return this.looks.run(clientName, () => {
      const startedAt = this.clock.now();
      return this.cache.revokedAt(clientName).then(
        (revokedAt) => this.note(clientName, revokedAt, startedAt),
        (error: unknown) => {
          this.reportFailure(clientName, 'revocation check', error);
          this.note(clientName, undefined, startedAt);
        },
      );
    });
  }

  /**
   * Keeps the latest revocation known (an invalidation in this container may have come in meanwhile), and
   * drops from memory what a newer one revokes.
   */
  note(clientName: string, revokedAt: number | undefined, checkedAt: number): void {
    const known = this.known.get(clientName)?.revokedAt;
    const latest = known === undefined || (revokedAt !== undefined && revokedAt > known) ? revokedAt : known;
    this.known.set(clientName, { revokedAt: latest, checkedAt });
    if (latest !== undefined && latest !== known) this.memory.dropRevoked(clientName, latest);
  }

  /**
   * Revokes every token of the client issued until now: in this container at once, in the table (its tokens
   * deleted, the marker written), and so in every other container within the check interval. Resolves with how
   * many tokens the table dropped.
   */
  async revoke(clientName: string): Promise<number> {
    const at = this.clock.now();
    this.known.set(clientName, { revokedAt: at, checkedAt: at });
    this.memory.dropRevoked(clientName, at);
    try {
      return await this.cache.revokeClient(clientName, at);
    } catch (error) {
      this.reportFailure(clientName, 'revocation', error);
      throw new BrokerError('unavailable', `the token table could not drop the tokens of client ${clientName}`);
    }
  }
}
