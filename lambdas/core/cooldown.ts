import { BrokerError } from './errors.js';

/**
 * Why every container stops calling a client's token endpoint for a while: the provider refused the client
 * (invalid_client: its secret is wrong, and asking again cannot fix that), asked to be left alone (429), or is
 * failing (5xx, no answer in time, not reachable).
 */
export type CooldownReason = 'invalid_client' | 'rate_limited' | 'provider_failing';

/** A client's cooldown as the table holds it. Times are epoch milliseconds. */
export interface Cooldown {
  until: number;
  reason: CooldownReason;
  /** Failures in a row, this one included: each doubles the next pause, up to maxCooldownSeconds. */
  failures: number;
}

/** The first pause after a failure of each kind, before doubling. */
export const firstCooldownSeconds: Readonly<Record<CooldownReason, number>> = {
  invalid_client: 30,
  rate_limited: 10,
  provider_failing: 5,
};
/**
 * The longest pause doubling reaches for each kind. A failing provider is tried again at least every 30 s, so
 * the fleet is back within 30 s of it; a wrong secret needs a person, and calls cannot mend it.
 */
export const maxBackoffSeconds: Readonly<Record<CooldownReason, number>> = {
  invalid_client: 300,
  rate_limited: 60,
  provider_failing: 30,
};
/** The longest pause of all, a provider's Retry-After included: a wrong or hostile header cannot stop the fleet for long. */
export const maxCooldownSeconds = 600;
/**
 * How long a lapsed cooldown still counts towards the next one: a provider that fails again this soon after
 * the fleet came back is still failing, so the pause doubles rather than starting over.
 */
export const cooldownMemorySeconds = 3600;

/**
 * The cooldown a failure of the provider calls for, if any. Failures on the broker's side (a secret that cannot
 * be read, the issuance budget) call for none: the provider is not the one to spare.
 */
export function cooldownReasonOf(error: unknown): CooldownReason | undefined {
  if (!(error instanceof BrokerError)) return undefined;
  if (error.upstreamError === 'invalid_client') return 'invalid_client';
  if (error.upstreamStatus === 429) return 'rate_limited';
  if (error.upstreamStatus !== undefined && error.upstreamStatus >= 500) return 'provider_failing';
  if (error.upstreamUnreachable || error.code === 'upstream_timeout') return 'provider_failing';
  return undefined;
}

/**
 * The cooldown that follows a failure: the provider's Retry-After when it sent one (at most maxCooldownSeconds),
 * otherwise the reason's first pause doubled for each failure in a row before it, at most maxBackoffSeconds.
 */
export function nextCooldown(
  reason: CooldownReason,
  previous: Cooldown | undefined,
  retryAfterMs: number | undefined,
  now: number,
): Cooldown {
  const failures =
    previous !== undefined && now - previous.until < cooldownMemorySeconds * 1000 ? previous.failures + 1 : 1;
  const backoffMs = Math.min(
    firstCooldownSeconds[reason] * 1000 * 2 ** Math.min(failures - 1, 16),
    maxBackoffSeconds[reason] * 1000,
  );
  const pauseMs = Math.min(retryAfterMs ?? backoffMs, maxCooldownSeconds * 1000);
  return { until: now + pauseMs, reason, failures };
}

export function isCoolingDown(cooldown: Cooldown | undefined, now: number): cooldown is Cooldown {
  return cooldown !== undefined && cooldown.until > now;
}

const described: Readonly<Record<CooldownReason, string>> = {
  invalid_client: 'refused the client (invalid_client)',
  rate_limited: 'asked for fewer requests (HTTP 429)',
  provider_failing: 'is failing',
};

/** What a caller is told while a cooldown stands and there is no token to serve: 503, with when to come back. */
export function coolingDownError(clientName: string, cooldown: Cooldown, now: number): BrokerError {
  const seconds = Math.max(1, Math.ceil((cooldown.until - now) / 1000));
  return new BrokerError(
    'unavailable',
    `the token endpoint of client ${clientName} ${described[cooldown.reason]}; every container waits ${seconds} s before calling it again`,
    { retryAfterSeconds: seconds },
  );
}
