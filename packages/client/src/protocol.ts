/**
 * The parts of the broker's protocol the client needs. They are restated here rather than imported from the
 * broker so that the package stands alone; test/client/protocol.test.ts fails when the two drift apart.
 */

/** Every `error` (HTTP) or `errorType` (Lambda) the broker answers with. */
export const brokerErrorCodes = [
  'invalid_request',
  'invalid_scope',
  'invalid_target',
  'access_denied',
  'unknown_client',
  'not_found',
  'method_not_allowed',
  'server_error',
  'upstream_error',
  'unavailable',
  'upstream_timeout',
] as const;

export type BrokerErrorCode = (typeof brokerErrorCodes)[number];

/** Sorted and de-duplicated, as the broker does, so that "b a a" and "a b" name the same grant. */
export function normalizeScope(scope: string): string[] {
  return [...new Set(scope.split(' ').filter((part) => part !== ''))].sort();
}
