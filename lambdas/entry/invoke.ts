import type { TokenBroker, TokenResponse } from '../core/broker.js';
import { BrokerError, toBrokerError } from '../core/errors.js';
import type { BrokerLogger } from '../core/ports.js';
import { logFailure, logServed } from './audit.js';

const allowedFields = new Set(['client', 'scope']);

/**
 * A direct Lambda invocation. IAM grants invoke rights per alias, one alias per client, so an invocation
 * is served only for the client its alias is named after; an unqualified one could ask for any client.
 * Failures throw a BrokerError, whose name (the error code) Lambda reports as the errorType.
 */
export async function handleInvokeEvent(
  event: unknown,
  invokedFunctionArn: string,
  broker: TokenBroker,
  logger: BrokerLogger,
): Promise<TokenResponse> {
  const alias = aliasOf(invokedFunctionArn);
  let client: string | undefined;
  try {
    const request = parseInvokeEvent(event);
    client = request.client;
    if (alias === undefined) {
      throw new BrokerError('access_denied', 'invoke the function through the alias named after the client');
    }
    if (alias !== request.client) {
      throw new BrokerError('access_denied', `the alias ${alias} serves client ${alias} only`);
    }
    const result = await broker.getToken(request);
    logServed(logger, { invokedAs: invokedFunctionArn, channel: 'invoke', client: request.client, result });
    return result.response;
  } catch (thrown) {
    const error = toBrokerError(thrown);
    logFailure(logger, { invokedAs: invokedFunctionArn, channel: 'invoke', client, error });
    throw error;
  }
}

/** arn:aws:lambda:region:account:function:name[:qualifier]; versions and $LATEST are not aliases. */
export function aliasOf(invokedFunctionArn: string): string | undefined {
  const qualifier = invokedFunctionArn.split(':')[7];
  if (qualifier === undefined || qualifier === '$LATEST' || /^\d+$/.test(qualifier)) return undefined;
  return qualifier;
}

export function isInvokeEvent(event: unknown): boolean {
  return typeof event === 'object' && event !== null && !Array.isArray(event) && 'client' in event;
}

function parseInvokeEvent(event: unknown): { client: string; scope?: string } {
  if (typeof event !== 'object' || event === null || Array.isArray(event)) {
    throw new BrokerError('invalid_request', 'the event must be a JSON object {"client", "scope"?}');
  }
  const unknown = Object.keys(event).filter((key) => !allowedFields.has(key));
  if (unknown.length > 0)
    throw new BrokerError('invalid_request', 'the event may only contain the fields client and scope');
  const { client, scope } = event as { client?: unknown; scope?: unknown };
  if (typeof client !== 'string' || client === '')
    throw new BrokerError('invalid_request', 'client must be a non-empty string');
  if (scope !== undefined && typeof scope !== 'string')
    throw new BrokerError('invalid_request', 'scope must be a string');
  return scope === undefined ? { client } : { client, scope };
}
