import type { ClientConfig } from './config.js';
import { BrokerError } from './errors.js';

// RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
const scopeToken = /^[\x21\x23-\x5B\x5D-\x7E]+$/;
const maxScopeLength = 1024;

export function isScopeToken(value: string): boolean {
  return scopeToken.test(value);
}

/** Sorted and de-duplicated, so that "b a a" and "a b" name the same grant. */
export function normalizeScope(scope: string): string[] {
  return [...new Set(scope.split(' ').filter((part) => part !== ''))].sort();
}

/**
 * Resolves what a caller asked for into the scope set the broker will request: the client's default
 * when absent, otherwise a well-formed subset of the scopes the client is allowed.
 */
export function resolveScope(clientName: string, client: ClientConfig, requested: string | undefined): string[] {
  if (requested === undefined) return client.defaultScope === undefined ? [] : normalizeScope(client.defaultScope);
  if (requested.length > maxScopeLength) {
    throw new BrokerError('invalid_scope', `scope is longer than ${maxScopeLength} characters`);
  }
  const scopes = normalizeScope(requested);
  if (scopes.length === 0) throw new BrokerError('invalid_scope', 'scope is empty');
  for (const scope of scopes) {
    if (!isScopeToken(scope)) {
      throw new BrokerError('invalid_scope', 'scope must be space-delimited printable ASCII scope tokens');
    }
  }
  const allowed = new Set(client.scopes);
  const refused = scopes.filter((scope) => !allowed.has(scope));
  if (refused.length > 0) {
    throw new BrokerError('invalid_scope', `client ${clientName} is not allowed scope ${refused.join(' ')}`);
  }
  return scopes;
}
