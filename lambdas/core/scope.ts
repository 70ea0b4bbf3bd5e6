import { BrokerError } from './errors.js';

// RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
const scopeToken = /^[\x21\x23-\x5B\x5D-\x7E]+$/;

/** The longest scope string a request may carry. */
export { maxScopeLength } from '../contract.js';

import { maxScopeLength } from '../contract.js';

// An error names at most this much of what was refused: enough to see the mistake, never a wall of input.
const maxEchoedScopes = 3;
const maxEchoedLength = 200;

export function isScopeToken(value: string): boolean {
  return scopeToken.test(value);
}

/** Sorted and de-duplicated, so that "b a a" and "a b" name the same grant. */
export function normalizeScope(scope: string): string[] {
  return [...new Set(scope.split(' ').filter((part) => part !== ''))].sort();
}

/**
 * What scope resolution needs of a client's registry entry (config.ts's ClientConfig has it). Stated here, not
 * imported, because config.ts checks its scopes with isScopeToken: the two modules must not import each other.
 */
export interface ScopedClient {
  scopes: readonly string[];
  defaultScope?: string | undefined;
}

/**
 * Resolves what a caller asked for into the scope set the broker will request: the client's default
 * when absent (every allowed scope when it has none, so that a request always names its scope and the
 * grant can be checked against it), otherwise a well-formed subset of the scopes the client is allowed.
 */
export function resolveScope(clientName: string, client: ScopedClient, requested: string | undefined): string[] {
  if (requested === undefined) return normalizeScope(client.defaultScope ?? client.scopes.join(' '));
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
  const refused = scopesOutside(scopes, client.scopes);
  if (refused.length > 0) {
    throw new BrokerError('invalid_scope', `client ${clientName} is not allowed scope ${echoed(refused)}`);
  }
  return scopes;
}

/** The scopes outside a set: what a granted scope may not contain. */
export function scopesOutside(scopes: readonly string[], allowed: readonly string[]): string[] {
  const permitted = new Set(allowed);
  return scopes.filter((scope) => !permitted.has(scope));
}

function echoed(refused: readonly string[]): string {
  const shown = refused.slice(0, maxEchoedScopes).join(' ');
  const capped = shown.length > maxEchoedLength ? `${shown.slice(0, maxEchoedLength)}...` : shown;
  const more = refused.length - maxEchoedScopes;
  return more > 0 ? `${capped} (and ${more} more)` : capped;
}
