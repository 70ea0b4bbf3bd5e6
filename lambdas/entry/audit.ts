import { type Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { type MetricName, maxScopeLength } from '../contract.js';
import type { CacheOutcome, TokenResult } from '../core/broker.js';
import { isClientName } from '../core/config.js';
import { plainCode } from '../core/echo.js';
import type { BrokerError } from '../core/errors.js';
import type { BrokerLogger } from '../core/ports.js';
import { isScopeToken } from '../core/scope.js';

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

// An IAM or STS ARN (user, role, assumed-role session), as API Gateway puts in userArn.
const callerPattern = /^arn:[A-Za-z0-9+=,.@_:/-]{1,1020}$/;
const maxLoggedScopeLength = maxScopeLength;
const maxLoggedDescriptionLength = 512;

/*
 * Every field below that someone other than the broker chose (the caller's client name and identity, the
 * provider's granted scope, a defect's error name) is logged only when it has the shape it should have, and is
 * otherwise left out: a log line never carries an unbounded or arbitrary value, nor a part of one.
 */
const loggedClient = (client: string | undefined) => (isClientName(client) ? client : undefined);
// Typed a string, but an event forged to look like API Gateway's can put any JSON value there.
const loggedCaller = (caller: unknown) =>
  typeof caller === 'string' && callerPattern.test(caller) ? caller : undefined;

function loggedScope(scope: string): string | undefined {
  if (scope.length > maxLoggedScopeLength) return undefined;
  return scope.split(' ').every((part) => part === '' || isScopeToken(part)) ? scope : undefined;
}

/** Descriptions are the broker's own words, but may quote a caller's scope: bounded all the same. */
function loggedDescription(description: string): string {
  return description.length > maxLoggedDescriptionLength
    ? `${description.slice(0, maxLoggedDescriptionLength)}… (truncated)`
    : description;
}

const outcomeMetric: Record<CacheOutcome, MetricName> = {
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
    caller: loggedCaller(entry.caller),
    invokedAs: entry.invokedAs,
    client: loggedClient(entry.client),
    scope: loggedScope(entry.result.response.scope),
    requestedScope: entry.result.requestedScope,
    // Values from the client's own list in the registry, never the caller's text.
    audience: entry.result.parameters.audience,
    resource: entry.result.parameters.resource,
    cache: entry.result.cache,
    upstreamMs: entry.result.upstreamMs,
    expiresIn: entry.result.response.expires_in,
    minTtl: entry.result.asked?.minTtl,
    forceRefresh: entry.result.asked?.forceRefresh,
  });
  sink.metrics?.addMetric(outcomeMetric[entry.result.cache], MetricUnit.Count, 1);
}

export function logInvalidated(sink: AuditSink, entry: AuditContext & { client: string; dropped: number }): void {
  sink.logger.warn('client tokens invalidated', {
    channel: entry.channel,
    caller: loggedCaller(entry.caller),
    invokedAs: entry.invokedAs,
    client: loggedClient(entry.client),
    dropped: entry.dropped,
  });
  sink.metrics?.addMetric('Invalidations' satisfies MetricName, MetricUnit.Count, 1);
}

export function logFailure(
  sink: AuditSink,
  entry: AuditContext & { client: string | undefined; error: BrokerError },
): void {
  const attributes: Record<string, unknown> = {
    channel: entry.channel,
    caller: loggedCaller(entry.caller),
    invokedAs: entry.invokedAs,
    client: loggedClient(entry.client),
    errorCode: entry.error.code,
    errorDescription: loggedDescription(entry.error.message),
  };
  if (entry.error.status >= 500) {
    // A defect's cause is named by its type only: its message could quote something it should not.
    if (entry.error.code === 'server_error' && entry.error.cause instanceof Error) {
      attributes.causeName = plainCode(entry.error.cause.name);
    }
    sink.logger.error('token request failed', attributes);
  } else {
    sink.logger.warn('token request refused', attributes);
  }
  if (sink.metrics !== undefined) {
    const metric = sink.metrics.singleMetric();
    metric.addDimension('ErrorCode', entry.error.code);
    metric.addMetric('Errors' satisfies MetricName, MetricUnit.Count, 1);
  }
}
