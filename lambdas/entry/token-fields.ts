import type { GetTokenRequest } from '../core/broker.js';
import { BrokerError } from '../core/errors.js';
import { forceRefreshOf, minTtlOf } from '../core/freshness.js';

/** The fields a token request may carry besides the client, over HTTP (the body) and by direct invoke. */
export const tokenRequestFields = ['scope', 'audience', 'resource', 'minTtl', 'forceRefresh'] as const;
export const tokenRequestFieldList = 'scope, audience, resource, minTtl and forceRefresh';

const textFields = ['scope', 'audience', 'resource'] as const;

/**
 * The token request the fields make, each of its type when present (strings, a whole number of seconds, a
 * boolean); whether a value is allowed is the broker's call.
 */
export function tokenRequestOf(client: string, fields: Readonly<Record<string, unknown>>): GetTokenRequest {
  const request: GetTokenRequest = { client };
  for (const field of textFields) {
    const value = fields[field];
    if (value === undefined) continue;
    if (typeof value !== 'string') throw new BrokerError('invalid_request', `${field} must be a string`);
    request[field] = value;
  }
  if (fields.minTtl !== undefined) request.minTtl = minTtlOf(fields.minTtl);
  if (fields.forceRefresh !== undefined) request.forceRefresh = forceRefreshOf(fields.forceRefresh);
  return request;
}
