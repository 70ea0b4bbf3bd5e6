import { functionTimeoutMs, runtimeSettings } from '../contract.js';
import type { CacheSlot } from './cache-slot.js';
import {
  type ClientConfig,
  type ClientRegistry,
  maxLifetimeSeconds,
  runtimeSettingBounds,
  wholeNumberProblem,
} from './config.js';
import { type Cooldown, coolingDownError, isCoolingDown } from './cooldown.js';
import { BrokerError } from './errors.js';
import { FleetCooldowns } from './fleet-cooldown.js';
import { asksForFreshness, type Freshness, meetsFreshness, resolveFreshness } from './freshness.js';
import { IssuanceGate } from './issuance-gate.js';
import { type GoAhead, Leases } from './lease.js';
import { MemoryTier } from './memory-tier.js';
import type {
  BrokerLogger,
  BrokerMetrics,
  CachedToken,
  Clock,
  SealingKeySource,
  SecretSource,
  TokenCache,
  TokenEndpoint,
} from './ports.js';
import { noMetrics, silentLogger, systemClock } from './ports.js';
import { RenewalPolicy } from './renewal-policy.js';
import { Revocations } from './revocation.js';
import { resolveScope } from './scope.js';
import { type SealMaterial, SharedTier, tableFailureReport } from './shared-tier.js';
import { SingleFlight } from './single-flight.js';
import { type ExchangeTarget, TokenExchange } from './token-exchange.js';
import { cacheKeyOf, resolveParameters, type TokenParameters } from './token-parameters.js';

// The runtime settings' defaults are the contract's table's.
export const defaultRefreshWindowSeconds = runtimeSettings.refreshWindowSeconds.default;
export const defaultRefreshAheadFraction = 0.2;
export const defaultRefreshAheadMaxSeconds = runtimeSettings.refreshAheadMaxSeconds.default;
export const defaultRevocationCheckSeconds = 30;
/** One upstream exchange (discovery, token request, retries, the invalid_client retry) must end within this. */
export const defaultUpstreamBudgetMs = runtimeSettings.upstreamBudgetMs.default;
/** A lease outlasts its holder's upstream deadline by this much: time to store the token and release the lease. */
export const leaseMarginMs = 2_000;
// The function's timeout is the contract's: the stack sets it from there.
export { functionTimeoutMs } from '../contract.js';
/** What a request spends besides waiting on a lease and on the provider: the secret and the table, before and after. */
export const requestOverheadMs = 2_000;
const leasePollMs = 100;
/** A waiter looks a little past the lease it waits on, so that it sees that lease lapse before giving up. */
const leaseWaitSlackMs = 2 * leasePollMs;

/** How long a container holds the right to call the token endpoint for a key: its upstream budget and a margin. */
export function leaseMsFor(upstreamBudgetMs: number): number {
  return upstreamBudgetMs + leaseMarginMs;
}

export interface TimeBudget {
  upstreamBudgetMs: number;
  /** Default: leaseMsFor(upstreamBudgetMs). */
  leaseMs?: number;
  /** Default: functionTimeoutMs. */
  functionTimeoutMs?: number;
}

/**
 * The longest a request can take is a wait of one lease period on a holder that died, then the takeover's
 * own upstream budget (or, for the waiters that lost the takeover, a wait as long on the new holder), plus the
 * table and secret I/O around them; that must end before the function times out. Returns what is wrong, or
 * undefined when the budget fits.
 */
export function checkTimeBudget(budget: TimeBudget): string | undefined {
  const { upstreamBudgetMs } = budget;
  const leaseMs = budget.leaseMs ?? leaseMsFor(upstreamBudgetMs);
  const timeoutMs = budget.functionTimeoutMs ?? functionTimeoutMs;
  if (!Number.isInteger(upstreamBudgetMs) || upstreamBudgetMs < 1) {
    return 'the upstream budget must be a whole number of milliseconds of at least 1';
  }
  if (leaseMs < upstreamBudgetMs + leaseMarginMs) {
    return `a lease of ${leaseMs} ms must outlast the upstream budget of ${upstreamBudgetMs} ms by ${leaseMarginMs} ms`;
  }
  const longestMs = leaseMs + 2 * leaseWaitSlackMs + upstreamBudgetMs + requestOverheadMs;
  if (longestMs <= timeoutMs) return undefined;
  const fittingMs = Math.floor((timeoutMs - leaseMarginMs - 2 * leaseWaitSlackMs - requestOverheadMs) / 2);
  return (
    `an upstream budget of ${upstreamBudgetMs} ms with a lease of ${leaseMs} ms lets a request take ` +
    `${longestMs} ms, over the function timeout of ${timeoutMs} ms (at most ${fittingMs} ms fits)`
  );
}

export interface TokenBrokerOptions {
  clients: ClientRegistry;
  secrets: SecretSource;
  /** The deployment's key that tokens in the table are sealed under. */
  sealingKeys: SealingKeySource;
  /** The shared tier behind the in-memory one. */
  cache: TokenCache;
  endpoint: TokenEndpoint;
  clock?: Clock;
  logger?: BrokerLogger;
  metrics?: BrokerMetrics;
  /** A token is handed out only while at least this much of its lifetime remains. */
  refreshWindowSeconds?: number;
  /** Renewal starts when this share of a token's lifetime remains (bounded by refreshAheadMaxSeconds)... */
  refreshAheadFraction?: number;
  refreshAheadMaxSeconds?: number;
  /**
   * Time for one whole upstream exchange (discovery, the token request, retries, the invalid_client retry);
   * the endpoint is handed a deadline this far ahead, and the lease on the key lasts leaseMsFor(this).
   */
  upstreamBudgetMs?: number;
  /** How often a container looks, before answering from memory, whether an administrator revoked a client's tokens. */
  revocationCheckSeconds?: number;
}

export interface GetTokenRequest {
  client: string;
  /** Space-delimited; absent means the client's default scope. */
  scope?: string;
  /** One of the client's `audiences`; absent means its `defaultAudience`, if any. */
  audience?: string;
  /** One of the client's `resources`; absent means its `defaultResource`, if any. */
  resource?: string;
  /** Seconds the token must still be valid for (freshness.ts caps it at half a token's lifetime). */
  minTtl?: number;
  /** The caller's token was refused: serve none issued before the last forceRefreshIntervalSeconds. */
  forceRefresh?: boolean;
}

/** Exactly what callers receive: nothing else of the upstream answer is passed on. */
export interface TokenResponse {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  scope: string;
}

/**
 * Where the answer came from: this container's memory, the shared table, the token endpoint for a key
 * with no usable token ('fetched') or ahead of expiry ('refreshed'), or a still-valid token served because
 * its renewal failed ('stale-served').
 */
export type CacheOutcome = 'memory' | 'table' | 'fetched' | 'refreshed' | 'stale-served';

export interface TokenResult {
  response: TokenResponse;
  cache: CacheOutcome;
  /** The normalized scope set that was requested (the cache key's scope part). */
  requestedScope: string;
  /** The audience and resource sent with it (the key's other parts), for the audit line. */
  parameters: TokenParameters;
  /** How long the token endpoint took, when this answer waited for it. */
  upstreamMs?: number;
  /** The caller's minTtl and forceRefresh, when it asked for either, for the audit line. */
  asked?: { minTtl?: number; forceRefresh?: true };
}

interface Loaded {
  token: CachedToken;
  cache: CacheOutcome;
  upstreamMs?: number;
}

/** One request's key and what it asks of the token. */
interface Target extends CacheSlot, ExchangeTarget {
  /** What this caller needs of the token besides the key (minTtl, forceRefresh); {} for most requests. */
  freshness: Freshness;
}

export { renewalBridgeMaxSeconds, renewalLeadMs, servableWindowMs } from './renewal-policy.js';
export { cacheKeyOf } from './token-parameters.js';

/**
 * The broker: a request's token from this container's memory, the shared table, or the token endpoint under a
 * fleet-wide lease, in that order. The parts each hold one concern (memory-tier, shared-tier, lease,
 * revocation, renewal-policy, fleet-cooldown, issuance-gate, token-exchange, single-flight); this class decides
 * which tier answers and when a token is renewed.
 */
export class TokenBroker {
  readonly refreshWindowSeconds: number;
  private readonly clients: ClientRegistry;
  private readonly secrets: SecretSource;
  private readonly clock: Clock;
  private readonly logger: BrokerLogger;
  private readonly metrics: BrokerMetrics;
  private readonly policy: RenewalPolicy;
  private readonly memory: MemoryTier;
  private readonly shared: SharedTier;
  private readonly revocations: Revocations;
  private readonly leases: Leases;
  private readonly cooldowns: FleetCooldowns;
  private readonly exchange: TokenExchange;
  private readonly loads = new SingleFlight<string, Loaded>();

  constructor(options: TokenBrokerOptions) {
    this.refreshWindowSeconds = wholeSeconds(
      'refreshWindowSeconds',
      options.refreshWindowSeconds,
      defaultRefreshWindowSeconds,
    );
    const refreshAheadMaxMs =
      wholeSeconds('refreshAheadMaxSeconds', options.refreshAheadMaxSeconds, defaultRefreshAheadMaxSeconds) * 1000;
    const upstreamBudgetMs = options.upstreamBudgetMs ?? defaultUpstreamBudgetMs;
    if (!Number.isInteger(upstreamBudgetMs) || upstreamBudgetMs < 1) {
      throw new RangeError('upstreamBudgetMs must be a positive integer');
    }
    const revocationCheckMs =
      wholeSeconds('revocationCheckSeconds', options.revocationCheckSeconds, defaultRevocationCheckSeconds) * 1000;
    const refreshAheadFraction = options.refreshAheadFraction ?? defaultRefreshAheadFraction;
    if (!(refreshAheadFraction >= 0 && refreshAheadFraction < 1)) {
      throw new RangeError('refreshAheadFraction must be at least 0 and below 1');
    }
    this.clients = options.clients;
    this.secrets = options.secrets;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.metrics = options.metrics ?? noMetrics;
    const { cache } = options;
    const { clock, logger, metrics } = this;
    const reportFailure = tableFailureReport(metrics, logger);
    this.policy = new RenewalPolicy({
      refreshWindowSeconds: this.refreshWindowSeconds,
      refreshAheadFraction,
      refreshAheadMaxMs,
    });
    this.memory = new MemoryTier(clock);
    this.revocations = new Revocations({
      cache,
      clock,
      checkIntervalMs: revocationCheckMs,
      memory: this.memory,
      reportFailure,
    });
    this.shared = new SharedTier({
      cache,
      sealingKeys: options.sealingKeys,
      revocations: this.revocations,
      reportFailure,
    });
    this.leases = new Leases({
      cache,
      clock,
      metrics,
      logger,
      reportFailure,
      upstreamBudgetMs,
      leaseMs: leaseMsFor(upstreamBudgetMs),
      pollMs: leasePollMs,
      waitSlackMs: leaseWaitSlackMs,
    });
    this.cooldowns = new FleetCooldowns({ cache, clock, metrics, logger, reportFailure });
    const issuance = new IssuanceGate({ cache, clock, metrics, logger, reportFailure });
    this.exchange = new TokenExchange({
      secrets: this.secrets,
      endpoint: options.endpoint,
      issuance,
      clock,
      metrics,
      logger,
    });
  }

  hasClient(name: string): boolean {
    return Object.hasOwn(this.clients, name);
  }

  async getToken(request: GetTokenRequest): Promise<TokenResult> {
    const client = this.clientNamed(request.client);
    const scopes = resolveScope(request.client, client, request.scope);
    const parameters = resolveParameters(request.client, client, request);
    const freshness = resolveFreshness(request, this.clock.now());
    const key = cacheKeyOf(request.client, scopes, parameters);
    const target: Target = { clientName: request.client, client, scopes, parameters, key, freshness };
    const requestedScope = scopes.join(' ');
    // What the caller asked of the token, for the audit line whichever tier answers.
    const asked: Pick<TokenResult, 'asked'> = asksForFreshness(freshness)
      ? {
          asked: {
            ...(freshness.minRemainingMs === undefined ? {} : { minTtl: freshness.minRemainingMs / 1000 }),
            ...(freshness.notIssuedBefore === undefined ? {} : { forceRefresh: true as const }),
          },
        }
      : {};
    const revocationCheck = this.revocations.checkDue(request.client);
    if (revocationCheck !== undefined) await revocationCheck;

    const remembered = this.memory.get(target.key);
    const current = remembered !== undefined && this.isUsable(target, remembered) ? remembered : undefined;
    // Serve while refreshing: only the caller that starts a renewal waits for it; the rest get the current token.
    if (current !== undefined && (!this.isDue(current) || this.loads.has(target.key))) {
      return { response: this.present(current), cache: 'memory', requestedScope, parameters, ...asked };
    }
    // While the client's cooldown stands no renewal would call anyway: the current token, without a table read.
    if (current !== undefined && isCoolingDown(this.cooldowns.lastKnown(request.client), this.clock.now())) {
      this.metrics.count('CooldownSkips', request.client);
      this.metrics.count('StaleServed', request.client);
      return { response: this.present(current), cache: 'stale-served', requestedScope, parameters, ...asked };
    }
    let loaded: Loaded;
    if (asksForFreshness(freshness)) {
      // Callers with a requirement share a load among themselves, not with ordinary ones whose answer (a token
      // from the table, say) may not meet it; and one that another's load did not satisfy loads once more.
      loaded = await this.loads.run(`${target.key}\u0000fresh`, () => this.load(target, current));
      if (!meetsFreshness(loaded.token, freshness, this.clock.now())) loaded = await this.load(target, current);
    } else {
      loaded = await this.loads.run(target.key, () => this.load(target, current));
    }
    const result: TokenResult = {
      response: this.present(loaded.token),
      cache: loaded.cache,
      requestedScope,
      parameters,
      ...asked,
    };
    if (loaded.upstreamMs !== undefined) result.upstreamMs = loaded.upstreamMs;
    return result;
  }

  /**
   * Drops every cached token of a client, in this container, in the table, and (within the revocation
   * check interval) in every other container: for a secret rotated after a leak.
   */
  async invalidate(clientName: string): Promise<{ dropped: number }> {
    this.clientNamed(clientName);
    return { dropped: await this.revocations.revoke(clientName) };
  }

  private clientNamed(name: string): ClientConfig {
    if (!this.hasClient(name)) throw new BrokerError('unknown_client', `no client named ${JSON.stringify(name)}`);
    return this.clients[name] as ClientConfig;
  }

  /** Servable, not revoked, and what this caller asked for (minTtl, forceRefresh). */
  private isUsable(target: Target, token: CachedToken): boolean {
    return (
      this.isServable(token) &&
      !this.revocations.isRevoked(target.clientName, token) &&
      meetsFreshness(token, target.freshness, this.clock.now())
    );
  }

  private isServable(token: CachedToken): boolean {
    return this.policy.isServable(token, this.clock.now());
  }

  private isDue(token: CachedToken): boolean {
    return this.policy.isDue(token, this.clock.now());
  }

  /** A token issued at or before a revocation this container knows of is not kept (it is not served either). */
  private remember(target: Target, token: CachedToken): void {
    if (this.revocations.isRevoked(target.clientName, token)) return;
    this.memory.remember(target, token);
  }

  /** The target's token from the table when it is usable (remembered then), for a request waiting on a lease. */
  private async usableFromTable(target: Target, material: SealMaterial): Promise<CachedToken | undefined> {
    const stored = await this.shared.read(target, material);
    if (stored === undefined || !this.isUsable(target, stored)) return undefined;
    this.remember(target, stored);
    return stored;
  }

  private async load(target: Target, current: CachedToken | undefined): Promise<Loaded> {
    try {
      // The client's secret and the sealing key open the sealed token, so all three are needed: read them side by
      // side. So is the client's revocation marker when this container never looked at it, because a token issued
      // before an invalidation may still be in the table (the invalidation has not reached it yet): one more read
      // in parallel, not a round trip more.
      const firstLook = this.revocations.firstLook(target.clientName);
      const [credentials, sealingKey, sealed] = await Promise.all([
        this.secrets.getCredentials(target.clientName, target.client),
        this.shared.sealingKey(),
        this.shared.readSealed(target),
        firstLook,
      ]);
      const material: SealMaterial = { credentials, sealingKey };
      const stored = this.shared.open(target, material, sealed);
      if (stored !== undefined && this.isUsable(target, stored) && !this.isDue(stored)) {
        this.remember(target, stored);
        return { token: stored, cache: 'table' };
      }
      const fallback = newest([current, stored].filter((token) => token !== undefined && this.isUsable(target, token)));
      // A forced refresh or a minTtl replaces a token that is still servable to others: a refresh, not a fetch.
      const replacing =
        fallback !== undefined ||
        [this.memory.get(target.key), stored].some(
          (token) =>
            token !== undefined && this.isServable(token) && !this.revocations.isRevoked(target.clientName, token),
        );
      return await this.renew(target, material, fallback, replacing);
    } catch (error) {
      // A renewal that fails (secret unreadable, endpoint down) still leaves the current token to serve.
      if (current !== undefined && this.isServable(current)) return this.serveStale(target, current, error);
      throw error;
    }
  }

  private serveStale(target: Target, token: CachedToken, error: unknown): Loaded {
    this.metrics.count('StaleServed', target.clientName);
    this.logger.warn('token renewal failed; serving the current token', {
      client: target.clientName,
      errorCode: error instanceof BrokerError ? error.code : 'server_error',
    });
    return { token, cache: 'stale-served' };
  }

  /**
   * Calls the token endpoint under a lease, so that across containers one caller renews a key while the
   * others keep serving the current token or, when there is none, wait for the new one in the table. Only
   * the lease holder ever calls, and its whole exchange ends by a deadline that falls before its lease does.
   */
  private async renew(
    target: Target,
    material: SealMaterial,
    fallback: CachedToken | undefined,
    replacing: boolean,
  ): Promise<Loaded> {
    const known = this.cooldowns.lastKnown(target.clientName);
    if (isCoolingDown(known, this.clock.now())) return this.skipForCooldown(target, fallback, known);
    const holder = this.leases.newHolder();
    // The cooldown is read beside the lease, not after it: no round trip more on the way to the endpoint.
    const [attempt, shared] = await Promise.all([
      this.leases.acquire(target, holder),
      this.cooldowns.readShared(target.clientName),
    ]);
    this.cooldowns.learn(target.clientName, shared);
    if (isCoolingDown(shared, this.clock.now())) {
      if (attempt.state === 'held') await this.leases.release(target, holder);
      return this.skipForCooldown(target, fallback, shared);
    }
    const previous = shared ?? known;
    let lease: GoAhead;
    if (attempt.state === 'taken') {
      if (fallback !== undefined)
        return { token: fallback, cache: fallback === this.memory.get(target.key) ? 'memory' : 'table' };
      const waited = await this.leases.awaitHolder(target, holder, () => this.usableFromTable(target, material));
      if (!('deadline' in waited)) return { token: waited, cache: 'table' };
      lease = waited;
    } else {
      lease = attempt;
    }
    const { state, deadline } = lease;
    if (state === 'held') {
      // Check, lease, check again: a holder stores its token before it releases the lease, so a lease won just
      // after another container's release finds that container's token here rather than calling a second time.
      const stored = await this.shared.read(target, material);
      if (stored !== undefined && this.isUsable(target, stored) && !this.isDue(stored)) {
        await this.leases.release(target, holder);
        this.remember(target, stored);
        return { token: stored, cache: 'table' };
      }
    }
    const started = this.clock.now();
    if (target.freshness.notIssuedBefore !== undefined) {
      this.metrics.count('ForcedRefreshes', target.clientName);
      this.logger.info('token refresh forced by a caller', { client: target.clientName });
    }
    try {
      const fetched = await this.exchange.fetch(target, material.credentials, deadline);
      this.remember(target, fetched.token);
      const stored = await this.shared.write(target, fetched.token, { ...material, credentials: fetched.credentials });
      if (previous !== undefined) await this.cooldowns.end(target.clientName);
      if (stored?.outcome === 'revoked') {
        // An invalidation landed while the provider answered: the token predates it, so it is kept nowhere. The
        // requests waiting on it began before the invalidation and are answered with it.
        this.logger.info('token issued before an invalidation of its client; not kept', { client: target.clientName });
        this.revocations.note(target.clientName, stored.revokedAt, this.clock.now());
      }
      return {
        token: fetched.token,
        cache: replacing ? 'refreshed' : 'fetched',
        upstreamMs: this.clock.now() - started,
      };
    } catch (error) {
      await this.cooldowns.start(target.clientName, error, previous);
      if (fallback !== undefined && this.isServable(fallback)) return this.serveStale(target, fallback, error);
      throw error;
    } finally {
      if (state === 'held') await this.leases.release(target, holder);
    }
  }

  /** No call while the cooldown stands: the current token if there is one, otherwise a 503 that says when. */
  private skipForCooldown(target: Target, fallback: CachedToken | undefined, cooldown: Cooldown): Loaded {
    this.metrics.count('CooldownSkips', target.clientName);
    const refusal = coolingDownError(target.clientName, cooldown, this.clock.now());
    if (fallback !== undefined && this.isServable(fallback)) return this.serveStale(target, fallback, refusal);
    throw refusal;
  }

  private present(token: CachedToken): TokenResponse {
    return {
      access_token: token.accessToken,
      token_type: 'Bearer',
      expires_in: Math.max(0, Math.floor((token.expiresAt - this.clock.now()) / 1000)),
      scope: token.scope,
    };
  }
}

function newest(tokens: (CachedToken | undefined)[]): CachedToken | undefined {
  let best: CachedToken | undefined;
  for (const token of tokens)
    if (token !== undefined && (best === undefined || token.expiresAt > best.expiresAt)) best = token;
  return best;
}

/** A setting in whole seconds, within the bounds the settings parser holds every path to. */
function wholeSeconds(
  name: 'refreshWindowSeconds' | 'refreshAheadMaxSeconds' | 'revocationCheckSeconds',
  value: number | undefined,
  fallback: number,
): number {
  const seconds = value ?? fallback;
  const bounds =
    name === 'revocationCheckSeconds'
      ? { minimum: 0, maximum: maxLifetimeSeconds, unit: 'seconds' as const }
      : runtimeSettingBounds[name];
  const problem = wholeNumberProblem(seconds, bounds);
  if (problem !== undefined) throw new RangeError(`${name} ${problem}`);
  return seconds;
}
