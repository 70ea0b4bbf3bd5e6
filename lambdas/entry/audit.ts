import type { TokenResult } from '../core/broker.js';
import type { BrokerError } from '../core/errors.js';
import type { BrokerLogger } from '../core/ports.js';

/**
 * Who asked: over HTTP the caller's IAM ARN; a direct invocation carries no caller identity (CloudTrail
 * records it), so the function ARN it was invoked through, alias included, is logged instead.
 */
export interface AuditContext {
  channel: 'http' | 'invoke';
  caller?: string | undefined;
  invokedAs?: string | undefined;
}

/**
 * One log line per answer, so platform teams can audit who fetched which client. It names the caller,
 * the client, the scope and where the token came from; never the token itself.
 */
export function logServed(logger: BrokerLogger, entry: AuditContext & { client: string; result: TokenResult }): void {
  logger.info('token served', {
    channel: entry.channel,
    caller: entry.caller,
    invokedAs: entry.invokedAs,
    client: entry.client,
    scope: entry.result.response.scope,
    requestedScope: entry.result.requestedScope,
    cache: entry.result.cache,
    expiresIn: entry.result.response.expires_in,
  });
}

export function logFailure(
  logger: BrokerLogger,
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
    logger.error('token request failed', attributes);
  } else {
    logger.warn('token request refused', attributes);
  }
}
