import type { ClientConfig } from './config.js';
import { BrokerError } from './errors.js';

/**
 * The token request's parameters besides `scope` that a client may allow: Auth0's `audience` and RFC 8707's
 * `resource`. (Entra's `<resource>/.default` is a scope, allowed through `scopes`.) Each is part of the cache
 * key, so a token for one audience is never served for another.
 */
export interface TokenParameters {
  audience?: string;
  resource?: string;
}

/** What a caller asked for: text, not yet known to be allowed. */
export interface RequestedParameters {
  audience?: string | undefined;
  resource?: string | undefined;
}

const parameters = [
  { name: 'audience', allowed: 'audiences', fallback: 'defaultAudience' },
  { name: 'resource', allowed: 'resources', fallback: 'defaultResource' },
] as const;

/**
 * The parameters the broker will send: the caller's value when the client lists it, else the client's default,
 * else none. A value the client does not list is refused as RFC 8707's invalid_target, and is not repeated:
 * it is the caller's text, and a listed value is known to the caller already.
 */
export function resolveParameters(
  clientName: string,
  client: ClientConfig,
  requested: RequestedParameters,
): TokenParameters {
  const resolved: TokenParameters = {};
  for (const { name, allowed, fallback } of parameters) {
    const asked = requested[name];
    if (asked === undefined) {
      const value = client[fallback];
      if (value !== undefined) resolved[name] = value;
      continue;
    }
    const list = client[allowed];
    if (list === undefined) {
      throw new BrokerError('invalid_target', `client ${clientName} takes no ${name} parameter`);
    }
    if (!list.includes(asked)) {
      throw new BrokerError('invalid_target', `client ${clientName} is not allowed the requested ${name}`);
    }
    resolved[name] = asked;
  }
  return resolved;
}

// The cache-key format is the contract's, where the table adapter reads a client's key prefix too.
export { cacheKeyOf, cacheKeyPrefixOf } from '../contract.js';
