import type { GetTokenRequest } from '../core/broker.js';
import { BrokerError } from '../core/errors.js';

/** The fields a token request may carry besides the client, over HTTP (the body) and by direct invoke. */
export const tokenRequestFields = ['scope', 'audience', 'resource'] as const;
export const tokenRequestFieldList = 'scope, audience and resource';

/** The token request the fields make: each, when present, a string; whether it is allowed is the broker's call. */
export function tokenRequestOf(client: string, fields: Readonly<Record<string, unknown>>): GetTokenRequest {
  const request: GetTokenRequest = { client };
  for (const field of tokenRequestFields) {
    const value = fields[field];
    if (value === undefined) continue;
    if (typeof value !== 'string') throw new BrokerError('invalid_request', `${field} must be a string`);
    request[field] = value;
  }
  return request;
}
