import { type Cooldown, cooldownReasonOf, nextCooldown } from './cooldown.js';
import { BrokerError } from './errors.js';
import type { BrokerLogger, BrokerMetrics, Clock, TokenCache } from './ports.js';
import type { TableFailureReport } from './shared-tier.js';

export interface FleetCooldownsOptions {
  cache: TokenCache;
  clock: Clock;
  metrics: BrokerMetrics;
  logger: BrokerLogger;
  reportFailure: TableFailureReport;
}

/**
 * The cooldowns of cooldown.ts as the fleet shares them through the table, and as this container last knew
 * them: the last cooldown per client, standing or lapsed, since the next one doubles it.
 */
export class FleetCooldowns {
  private readonly known = new Map<string, Cooldown>();
  private readonly cache: TokenCache;
  private readonly clock: Clock;
  private readonly metrics: BrokerMetrics;
  private readonly logger: BrokerLogger;
  private readonly reportFailure: TableFailureReport;

  constructor(options: FleetCooldownsOptions) {
    this.cache = options.cache;
    this.clock = options.clock;
    this.metrics = options.metrics;
    this.logger = options.logger;
    this.reportFailure = options.reportFailure;
  }

  /** The client's last cooldown this container knows of, standing or lapsed. */
  lastKnown(clientName: string): Cooldown | undefined {
    return this.known.get(clientName);
  }

  /** The client's cooldown as the table holds it; undefined for none, or when the table fails (reported). */
  async readShared(clientName: string): Promise<Cooldown | undefined> {
    try {
      return await this.cache.readCooldown(clientName);
    } catch (error) {
      this.reportFailure(clientName, 'cooldown read', error);
      return undefined;
    }
  }

  /** Takes the table's cooldown for the client as the one it knows, when the table had one. */
  learn(clientName: string, shared: Cooldown | undefined): void {
    if (shared !== undefined) this.known.set(clientName, shared);
  }

  /**
   * A failure that asking again cannot mend soon (invalid_client, 429, 5xx, no answer) stops every container
   * calling the client's token endpoint until the cooldown lapses: the provider's Retry-After, or a pause that
   * doubles with each failure in a row. Warm keys keep serving their current token meanwhile.
   */
  async start(clientName: string, error: unknown, previous: Cooldown | undefined): Promise<void> {
    const reason = cooldownReasonOf(error);
    if (reason === undefined) return;
    const now = this.clock.now();
    const upstreamRetryAfterMs = error instanceof BrokerError ? error.upstreamRetryAfterMs : undefined;
    const cooldown = nextCooldown(reason, previous, upstreamRetryAfterMs, now);
    this.known.set(clientName, cooldown);
    this.metrics.count('Cooldowns', clientName);
    this.logger.warn('token endpoint failing; every container waits before calling it again', {
      client: clientName,
      reason,
      failures: cooldown.failures,
      waitSeconds: Math.ceil((cooldown.until - now) / 1000),
    });
    try {
      await this.cache.writeCooldown(clientName, cooldown);
    } catch (writeError) {
      this.reportFailure(clientName, 'cooldown write', writeError);
    }
  }

  /** The provider answered again: the next failure starts the pauses over, in every container. */
  async end(clientName: string): Promise<void> {
    this.known.delete(clientName);
    try {
      await this.cache.clearCooldown(clientName);
    } catch (error) {
      this.reportFailure(clientName, 'cooldown clear', error);
    }
  }
}
