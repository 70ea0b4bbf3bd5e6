import { adminAliasOf, clientAliasOf } from '../contract.js';
import type { GetTokenRequest, TokenBroker, TokenResponse } from '../core/broker.js';
import { clientNamePattern, isClientName } from '../core/config.js';
import { BrokerError, toBrokerError } from '../core/errors.js';
import { type AuditSink, logFailure, logInvalidated, logServed } from './audit.js';
import { tokenRequestFieldList, tokenRequestFields, tokenRequestOf } from './token-fields.js';

const tokenFields = new Set<string>(['client', ...tokenRequestFields]);
const adminFields = new Set(['action', 'client']);
/** Says what a client name looks like, never what was sent instead. */
const clientNameRule = `client must be a client name (${clientNamePattern.source})`;

// The alias names are the contract's: the construct creates them from there, and this module admits by them.
export { adminAliasOf, adminAliasSuffix, apiGatewayAliasName } from '../contract.js';

export interface InvalidationAnswer {
  client: string;
  dropped: number;
}

/**
 * A direct Lambda invocation. IAM grants invoke rights per alias, so the alias is the authorization:
 * `{client, scope?}` is served only through the alias named after that client, and the admin event
 * `{action: "invalidate", client}` only through the client's admin alias `<client>_admin`, which is
 * granted separately so that fetching a token never implies the right to drop the cache. An unqualified
 * invocation could ask for anything and is refused. Failures throw a BrokerError, whose name (the error
 * code) Lambda reports as the errorType.
 */
export async function handleInvokeEvent(
  event: unknown,
  invokedFunctionArn: string,
  broker: TokenBroker,
  sink: AuditSink,
): Promise<TokenResponse | InvalidationAnswer> {
  const alias = aliasOf(invokedFunctionArn);
  let client: string | undefined;
  try {
    const request = parseInvokeEvent(event);
    client = request.client;
    if (alias === undefined) {
      throw new BrokerError('access_denied', 'invoke the function through the alias named after the client');
    }
    if (request.action === 'invalidate') {
      if (alias !== adminAliasOf(request.client)) {
        throw new BrokerError(
          'access_denied',
          `invalidation is served through the alias ${adminAliasOf(request.client)} only`,
        );
      }
      const { dropped } = await broker.invalidate(request.client);
      logInvalidated(sink, { invokedAs: invokedFunctionArn, channel: 'invoke', client: request.client, dropped });
      return { client: request.client, dropped };
    }
    if (alias !== clientAliasOf(request.client))
      throw new BrokerError('access_denied', `the alias ${alias} does not serve client ${request.client}`);
    const result = await broker.getToken(request.token);
    logServed(sink, { invokedAs: invokedFunctionArn, channel: 'invoke', client: request.client, result });
    return result.response;
  } catch (thrown) {
    const error = toBrokerError(thrown);
    logFailure(sink, { invokedAs: invokedFunctionArn, channel: 'invoke', client, error });
    throw error;
  }
}

/** arn:aws:lambda:region:account:function:name[:qualifier]; versions and $LATEST are not aliases. */
export function aliasOf(invokedFunctionArn: string): string | undefined {
  const qualifier = invokedFunctionArn.split(':')[7];
  if (qualifier === undefined || qualifier === '$LATEST' || /^\d+$/.test(qualifier)) return undefined;
  return qualifier;
}

type InvokeRequest =
  | { action: 'token'; client: string; token: GetTokenRequest }
  | { action: 'invalidate'; client: string };

function parseInvokeEvent(event: unknown): InvokeRequest {
  if (typeof event !== 'object' || event === null || Array.isArray(event)) {
    throw new BrokerError('invalid_request', 'the event must be a JSON object {"client", "scope"?}');
  }
  const { action, client } = event as { action?: unknown; client?: unknown };
  const allowed = action === undefined ? tokenFields : adminFields;
  if (Object.keys(event).some((key) => !allowed.has(key))) {
    throw new BrokerError(
      'invalid_request',
      action === undefined
        ? `the event may only contain the fields client, ${tokenRequestFieldList}`
        : 'an admin event may only contain the fields action and client',
    );
  }
  if (action !== undefined && action !== 'invalidate')
    throw new BrokerError('invalid_request', 'action must be "invalidate"');
  // Checked before anything repeats it: the alias and client checks below echo the name in their errors.
  if (!isClientName(client)) throw new BrokerError('invalid_request', clientNameRule);
  if (action === 'invalidate') return { action, client };
  return { action: 'token', client, token: tokenRequestOf(client, event as Record<string, unknown>) };
}
