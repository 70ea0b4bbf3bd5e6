import { type Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { CacheOutcome, TokenResult } from '../core/broker.js';
import type { BrokerError } from '../core/errors.js';
import type { BrokerLogger } from '../core/ports.js';

/** Where each answer is recorded: a log line for audit, and metrics when running under Powertools. */
export interface AuditSink {
  logger: BrokerLogger;
  metrics?: Metrics;
}

/**
 * Who asked: over HTTP the caller's IAM ARN; a direct invocation carries no caller identity (CloudTrail
 * records it), so the function ARN it was invoked through, alias included, is logged instead.
 */
export interface AuditContext {
  channel: 'http' | 'invoke';
  caller?: string | undefined;
  invokedAs?: string | undefined;
}

const outcomeMetric: Record<CacheOutcome, string> = {
  memory: 'MemoryHits',
  table: 'TableHits',
  fetched: 'TokensFetched',
  refreshed: 'TokensRefreshed',
  'stale-served': 'StaleTokensServed',
};

/**
 * One log line per answer, so platform teams can audit who fetched which client. It names the caller,
 * the client, the scope and where the token came from; never the token itself.
 */
export function logServed(sink: AuditSink, entry: AuditContext & { client: string; result: TokenResult }): void {
  sink.logger.info('token served', {
    channel: entry.channel,
    caller: entry.caller,
    invokedAs: entry.invokedAs,
    client: entry.client,
    scope: entry.result.response.scope,
    requestedScope: entry.result.requestedScope,
    cache: entry.result.cache,
    upstreamMs: entry.result.upstreamMs,
    expiresIn: entry.result.response.expires_in,
  });
  sink.metrics?.addMetric(outcomeMetric[entry.result.cache], MetricUnit.Count, 1);
}

export function logInvalidated(sink: AuditSink, entry: AuditContext & { client: string; dropped: number }): void {
  sink.logger.warn('client tokens invalidated', {
    channel: entry.channel,
    caller: entry.caller,
    invokedAs: entry.invokedAs,
    client: entry.client,
    dropped: entry.dropped,
  });
  sink.metrics?.addMetric('Invalidations', MetricUnit.Count, 1);
}

export function logFailure(
  sink: AuditSink,
  entry: AuditContext & { client: string | undefined; error: BrokerError },
): void {
  const attributes: Record<string, unknown> = {
    channel: entry.channel,
    caller: entry.caller,
    invokedAs: entry.invokedAs,
    client: entry.client,
    errorCode: entry.error.code,
    errorDescription: entry.error.message,
  };
  if (entry.error.status >= 500) {
    // A defect's cause is named by its type only: its message could quote something it should not.
    if (entry.error.code === 'server_error' && entry.error.cause instanceof Error) {
      attributes.causeName = entry.error.cause.name;
    }
    sink.logger.error('token request failed', attributes);
  } else {
    sink.logger.warn('token request refused', attributes);
  }
  if (sink.metrics !== undefined) {
    const metric = sink.metrics.singleMetric();
    metric.addDimension('ErrorCode', entry.error.code);
    metric.addMetric('Errors', MetricUnit.Count, 1);
  }
}
