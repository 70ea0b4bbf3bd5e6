import { BrokerError } from './errors.js';

/**
 * Token-endpoint calls a client may make per clock hour, across the fleet, unless its registry entry sets
 * `maxTokenRequestsPerHour`. Steady state is one call per scope set and audience per token lifetime (12 an hour
 * for 300 s tokens), and forced refreshes add at most 120 per key: a ceiling a healthy client never meets, that
 * a bug (a key per request, a refresh loop) meets within the hour instead of running up the provider's bill.
 */
export const defaultMaxTokenRequestsPerHour = 360;
/** The largest ceiling a client may set. */
export const maxTokenRequestsPerHourLimit = 100_000;
/** The share of its budget beyond which a client's usage warns (a log line, and the alarm on IssuanceBudgetUsed). */
export const issuanceBudgetWarnPercent = 80;

const hourMs = 3_600_000;

/** The clock hour a call falls in: the budget's window, which every container agrees on. */
export function budgetWindowOf(now: number): { start: number; end: number } {
  const start = Math.floor(now / hourMs) * hourMs;
  return { start, end: start + hourMs };
}

/** A ceiling that no call may cross. Not the provider's doing, so it starts no cooldown. */
export function issuanceBudgetExhausted(clientName: string, limit: number, windowEnd: number, now: number) {
  const seconds = Math.max(1, Math.ceil((windowEnd - now) / 1000));
  return new BrokerError(
    'unavailable',
    `client ${clientName} has made its ${limit} token requests this hour; the next may go out in ${seconds} s`,
    { retryAfterSeconds: seconds },
  );
}
