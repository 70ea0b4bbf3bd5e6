import type { ClientConfig } from './config.js';
import {
  budgetWindowOf,
  defaultMaxTokenRequestsPerHour,
  issuanceBudgetExhausted,
  issuanceBudgetWarnPercent,
} from './issuance-budget.js';
import type { BrokerLogger, BrokerMetrics, Clock, TokenCache } from './ports.js';
import type { TableFailureReport } from './shared-tier.js';

export interface IssuanceGateOptions {
  cache: TokenCache;
  clock: Clock;
  metrics: BrokerMetrics;
  logger: BrokerLogger;
  reportFailure: TableFailureReport;
}

/** The issuance budget of issuance-budget.ts, kept: every token-endpoint call passes it first. */
export class IssuanceGate {
  /** Per client, the end of the hour whose issuance budget this container saw used up. */
  private readonly spentUntil = new Map<string, number>();
  private readonly cache: TokenCache;
  private readonly clock: Clock;
  private readonly metrics: BrokerMetrics;
  private readonly logger: BrokerLogger;
  private readonly reportFailure: TableFailureReport;

  constructor(options: IssuanceGateOptions) {
    this.cache = options.cache;
    this.clock = options.clock;
    this.metrics = options.metrics;
    this.logger = options.logger;
    this.reportFailure = options.reportFailure;
  }

  /**
   * Counts the call against the client's hourly budget, fleet-wide, or refuses it once the budget is spent. The
   * table being unreachable lets the call go: the lease and single flight still bound it, and refusing would
   * turn a table outage into a token outage.
   */
  async take(clientName: string, client: Pick<ClientConfig, 'maxTokenRequestsPerHour'>): Promise<void> {
    const limit = client.maxTokenRequestsPerHour ?? defaultMaxTokenRequestsPerHour;
    const now = this.clock.now();
    const window = budgetWindowOf(now);
    if ((this.spentUntil.get(clientName) ?? 0) > now) {
      throw issuanceBudgetExhausted(clientName, limit, window.end, now);
    }
    let used: number | undefined;
    try {
      used = await this.cache.countIssuance(clientName, window, limit);
    } catch (error) {
      this.reportFailure(clientName, 'issuance count', error);
      return;
    }
    if (used === undefined) {
      this.spentUntil.set(clientName, window.end);
      this.metrics.count('IssuanceBudgetExhausted', clientName);
      this.logger.error('token request refused: the client made its maxTokenRequestsPerHour', {
        client: clientName,
        maxTokenRequestsPerHour: limit,
        resumesInSeconds: Math.ceil((window.end - now) / 1000),
      });
      throw issuanceBudgetExhausted(clientName, limit, window.end, now);
    }
    const percent = (100 * used) / limit;
    this.metrics.issuanceBudgetUsed(percent, clientName);
    // The first call past the share the alarm watches: one line per client and hour, naming the client.
    if (used === Math.floor((limit * issuanceBudgetWarnPercent) / 100) + 1) {
      this.logger.warn('client has made most of its token requests for this hour', {
        client: clientName,
        used,
        maxTokenRequestsPerHour: limit,
      });
    }
  }
}
