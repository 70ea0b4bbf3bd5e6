import { randomUUID } from 'node:crypto';
import { functionTimeoutMs, runtimeSettings } from '../contract.js';
import {
  type ClientConfig,
  type ClientRegistry,
  maxLifetimeSeconds,
  runtimeSettingBounds,
  wholeNumberProblem,
} from './config.js';
import { type Cooldown, cooldownReasonOf, coolingDownError, isCoolingDown, nextCooldown } from './cooldown.js';
import { BrokerError } from './errors.js';
import { asksForFreshness, type Freshness, meetsFreshness, resolveFreshness } from './freshness.js';
import {
  budgetWindowOf,
  defaultMaxTokenRequestsPerHour,
  issuanceBudgetExhausted,
  issuanceBudgetWarnPercent,
} from './issuance-budget.js';
import type {
  BrokerLogger,
  BrokerMetrics,
  CachedToken,
  ClientCredentials,
  Clock,
  PutOutcome,
  SealingKeySource,
  SecretSource,
  StoredToken,
  TokenCache,
  TokenEndpoint,
  TokenLease,
} from './ports.js';
import { noMetrics, silentLogger, systemClock } from './ports.js';
import { normalizeScope, resolveScope, scopesOutside } from './scope.js';
import { deriveSealingKey, type SealingKey, seal, sealFormat, secretMaterialOf, unseal } from './sealing.js';
import { SingleFlight } from './single-flight.js';
import { cacheKeyOf, cacheKeyPrefixOf, resolveParameters, type TokenParameters } from './token-parameters.js';

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

/** What seals and opens a key's token in the table: the client's current credentials and the sealing key. */
interface Keys {
  credentials: ClientCredentials;
  sealingKey: Uint8Array;
}

interface Target {
  clientName: string;
  client: ClientConfig;
  scopes: string[];
  /** The parameters sent beside the scope, part of the key. */
  parameters: TokenParameters;
  key: string;
  /** What this caller needs of the token besides the key (minTtl, forceRefresh); {} for most requests. */
  freshness: Freshness;
}

/**
 * The outcome of asking for a key's lease: held (or not knowable, the table failing: the container goes
 * ahead alone) with the deadline for the upstream work, or held by another container.
 */
type GoAhead = { state: 'held' | 'unknown'; deadline: number };
type LeaseAttempt = GoAhead | { state: 'taken' };

/**
 * How long before expiry a token stops being served: the refresh window, scaled down to a quarter of the
 * lifetime for tokens that live less than four windows, or a token issued for the window or less would never
 * be served from a cache at all.
 */
export function servableWindowMs(lifetimeMs: number, refreshWindowSeconds: number): number {
  return Math.min(refreshWindowSeconds * 1000, lifetimeMs / 4);
}

/**
 * With refresh ahead on, renewal falls at least this long (a tenth of the lifetime for short tokens) before the
 * token stops being served: while it runs, or fails and the fleet's cooldown passes, every other caller is still
 * served the current token. Without it a token whose refresh-ahead share is no more than the window (300 s
 * tokens and a 60 s window) would be renewed only once it could no longer be served, and every caller would
 * wait on the renewal, or fail with it.
 */
export const renewalBridgeMaxSeconds = 30;

/**
 * How long before expiry renewal is due: a share of the lifetime (bounded), and never later than the window
 * less the bridge.
 */
export function renewalLeadMs(
  lifetimeMs: number,
  settings: { refreshWindowSeconds: number; refreshAheadFraction: number; refreshAheadMaxMs: number },
): number {
  const bridgeMs =
    settings.refreshAheadFraction === 0
      ? 0
      : Math.min(renewalBridgeMaxSeconds * 1000, lifetimeMs / 10, settings.refreshAheadMaxMs);
  return Math.max(
    servableWindowMs(lifetimeMs, settings.refreshWindowSeconds) + bridgeMs,
    Math.min(lifetimeMs * settings.refreshAheadFraction, settings.refreshAheadMaxMs),
  );
}

export { cacheKeyOf } from './token-parameters.js';

export class TokenBroker {
  readonly refreshWindowSeconds: number;
  private readonly clients: ClientRegistry;
  private readonly secrets: SecretSource;
  private readonly sealingKeys: SealingKeySource;
  private readonly cache: TokenCache;
  private readonly endpoint: TokenEndpoint;
  private readonly clock: Clock;
  private readonly logger: BrokerLogger;
  private readonly metrics: BrokerMetrics;
  private readonly refreshAheadFraction: number;
  private readonly refreshAheadMaxMs: number;
  private readonly upstreamBudgetMs: number;
  private readonly leaseMs: number;
  private readonly containerId = randomUUID();
  private readonly revocationCheckMs: number;
  private readonly memory = new Map<string, CachedToken>();
  private readonly loads = new SingleFlight<string, Loaded>();
  private readonly revocations = new Map<string, { revokedAt: number | undefined; checkedAt: number }>();
  /** The last cooldown this container knows of per client, standing or lapsed (the next one doubles it). */
  private readonly cooldowns = new Map<string, Cooldown>();
  /** Per client, the end of the hour whose issuance budget this container saw used up. */
  private readonly budgetSpentUntil = new Map<string, number>();
  private readonly revocationChecks = new SingleFlight<string, void>();

  constructor(options: TokenBrokerOptions) {
    this.refreshWindowSeconds = wholeSeconds(
      'refreshWindowSeconds',
      options.refreshWindowSeconds,
      defaultRefreshWindowSeconds,
    );
    this.refreshAheadMaxMs =
      wholeSeconds('refreshAheadMaxSeconds', options.refreshAheadMaxSeconds, defaultRefreshAheadMaxSeconds) * 1000;
    this.upstreamBudgetMs = options.upstreamBudgetMs ?? defaultUpstreamBudgetMs;
    if (!Number.isInteger(this.upstreamBudgetMs) || this.upstreamBudgetMs < 1) {
      throw new RangeError('upstreamBudgetMs must be a positive integer');
    }
    this.leaseMs = leaseMsFor(this.upstreamBudgetMs);
    this.revocationCheckMs =
      wholeSeconds('revocationCheckSeconds', options.revocationCheckSeconds, defaultRevocationCheckSeconds) * 1000;
    const fraction = options.refreshAheadFraction ?? defaultRefreshAheadFraction;
    if (!(fraction >= 0 && fraction < 1)) throw new RangeError('refreshAheadFraction must be at least 0 and below 1');
    this.refreshAheadFraction = fraction;
    this.clients = options.clients;
    this.secrets = options.secrets;
    this.sealingKeys = options.sealingKeys;
    this.cache = options.cache;
    this.endpoint = options.endpoint;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.metrics = options.metrics ?? noMetrics;
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
    const revocationCheck = this.revocationCheckDue(request.client);
    if (revocationCheck !== undefined) await revocationCheck;

    const remembered = this.memory.get(target.key);
    const current = remembered !== undefined && this.isUsable(target, remembered) ? remembered : undefined;
    // Serve while refreshing: only the caller that starts a renewal waits for it; the rest get the current token.
    if (current !== undefined && (!this.isDue(current) || this.loads.has(target.key))) {
      return { response: this.present(current), cache: 'memory', requestedScope, parameters, ...asked };
    }
    // While the client's cooldown stands no renewal would call anyway: the current token, without a table read.
    if (current !== undefined && isCoolingDown(this.cooldowns.get(request.client), this.clock.now())) {
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
    const at = this.clock.now();
    this.revocations.set(clientName, { revokedAt: at, checkedAt: at });
    this.dropRevoked(clientName, at);
    try {
      return { dropped: await this.cache.revokeClient(clientName, at) };
    } catch (error) {
      this.sharedCacheFailed({ clientName }, 'revocation', error);
      throw new BrokerError('unavailable', `the token table could not drop the tokens of client ${clientName}`);
    }
  }

  private isRevoked(clientName: string, token: CachedToken): boolean {
    const revokedAt = this.revocations.get(clientName)?.revokedAt;
    return revokedAt !== undefined && token.issuedAt <= revokedAt;
  }

  /**
   * The look at the table for a revocation, once the last one is older than the interval: awaited before
   * anything is served, because a container frozen between requests runs no background work. Within the
   * interval there is none, so a memory hit does no I/O. A container that never looked has nothing of the
   * client in memory: its first look is taken by load(), beside the table read whose token it may serve.
   */
  private revocationCheckDue(clientName: string): Promise<void> | undefined {
    const pending = this.revocationChecks.pending(clientName);
    if (pending !== undefined) return pending;
    const known = this.revocations.get(clientName);
    if (known === undefined || this.clock.now() - known.checkedAt < this.revocationCheckMs) return undefined;
    return this.lookForRevocation(clientName);
  }

  /**
   * Reads the client's revocation marker; concurrent requests share one look (per client). When the table
   * cannot be read, memory keeps being served (logged and counted as SharedCacheErrors) and the next look comes
   * an interval later: a table outage must not take the broker down with it.
   */
  private lookForRevocation(clientName: string): Promise<void> {
    return this.revocationChecks.run(clientName, () => {
      const startedAt = this.clock.now();
      return this.cache.revokedAt(clientName).then(
        (revokedAt) => this.noteRevocation(clientName, revokedAt, startedAt),
        (error: unknown) => {
          this.sharedCacheFailed({ clientName }, 'revocation check', error);
          this.noteRevocation(clientName, undefined, startedAt);
        },
      );
    });
  }

  /** Keeps the latest revocation known (an invalidation in this container may have come in meanwhile). */
  private noteRevocation(clientName: string, revokedAt: number | undefined, checkedAt: number): void {
    const known = this.revocations.get(clientName)?.revokedAt;
    const latest = known === undefined || (revokedAt !== undefined && revokedAt > known) ? revokedAt : known;
    this.revocations.set(clientName, { revokedAt: latest, checkedAt });
    if (latest !== undefined && latest !== known) this.dropRevoked(clientName, latest);
  }

  private dropRevoked(clientName: string, revokedAt: number): void {
    for (const [key, token] of this.memory) {
      if (key.startsWith(cacheKeyPrefixOf(clientName)) && token.issuedAt <= revokedAt) this.memory.delete(key);
    }
  }

  private clientNamed(name: string): ClientConfig {
    if (!this.hasClient(name)) throw new BrokerError('unknown_client', `no client named ${JSON.stringify(name)}`);
    return this.clients[name] as ClientConfig;
  }

  /** Servable, not revoked, and what this caller asked for (minTtl, forceRefresh). */
  private isUsable(target: Target, token: CachedToken): boolean {
    return (
      this.isServable(token) &&
      !this.isRevoked(target.clientName, token) &&
      meetsFreshness(token, target.freshness, this.clock.now())
    );
  }

  private isServable(token: CachedToken): boolean {
    const remaining = token.expiresAt - this.clock.now();
    return remaining > 0 && remaining >= servableWindowMs(token.expiresAt - token.issuedAt, this.refreshWindowSeconds);
  }

  private isDue(token: CachedToken): boolean {
    const lead = renewalLeadMs(token.expiresAt - token.issuedAt, {
      refreshWindowSeconds: this.refreshWindowSeconds,
      refreshAheadFraction: this.refreshAheadFraction,
      refreshAheadMaxMs: this.refreshAheadMaxMs,
    });
    return token.expiresAt - this.clock.now() < lead;
  }

  private async load(target: Target, current: CachedToken | undefined): Promise<Loaded> {
    try {
      // The client's secret and the sealing key open the sealed token, so all three are needed: read them side by
      // side. So is the client's revocation marker when this container never looked at it, because a token issued
      // before an invalidation may still be in the table (the invalidation has not reached it yet): one more read
      // in parallel, not a round trip more.
      const firstLook = this.revocations.has(target.clientName) ? undefined : this.lookForRevocation(target.clientName);
      const [credentials, sealingKey, sealed] = await Promise.all([
        this.secrets.getCredentials(target.clientName, target.client),
        this.sealingKeys.getSealingKey(),
        this.readStored(target),
        firstLook,
      ]);
      const keys: Keys = { credentials, sealingKey };
      const stored = this.open(target, keys, sealed);
      if (stored !== undefined && this.isUsable(target, stored) && !this.isDue(stored)) {
        this.remember(target, stored);
        return { token: stored, cache: 'table' };
      }
      const fallback = newest([current, stored].filter((token) => token !== undefined && this.isUsable(target, token)));
      // A forced refresh or a minTtl replaces a token that is still servable to others: a refresh, not a fetch.
      const replacing =
        fallback !== undefined ||
        [this.memory.get(target.key), stored].some(
          (token) => token !== undefined && this.isServable(token) && !this.isRevoked(target.clientName, token),
        );
      return await this.renew(target, keys, fallback, replacing);
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
    keys: Keys,
    fallback: CachedToken | undefined,
    replacing: boolean,
  ): Promise<Loaded> {
    const known = this.cooldowns.get(target.clientName);
    if (isCoolingDown(known, this.clock.now())) return this.skipForCooldown(target, fallback, known);
    const holder = `${this.containerId}/${randomUUID()}`;
    // The cooldown is read beside the lease, not after it: no round trip more on the way to the endpoint.
    const [attempt, shared] = await Promise.all([this.acquireLease(target, holder), this.readCooldown(target)]);
    if (shared !== undefined) this.cooldowns.set(target.clientName, shared);
    if (isCoolingDown(shared, this.clock.now())) {
      if (attempt.state === 'held') await this.releaseLease(target, holder);
      return this.skipForCooldown(target, fallback, shared);
    }
    const previous = shared ?? known;
    let lease: GoAhead;
    if (attempt.state === 'taken') {
      if (fallback !== undefined)
        return { token: fallback, cache: fallback === this.memory.get(target.key) ? 'memory' : 'table' };
      const waited = await this.awaitHolder(target, keys, holder);
      if (!('deadline' in waited)) return { token: waited, cache: 'table' };
      lease = waited;
    } else {
      lease = attempt;
    }
    const { state, deadline } = lease;
    if (state === 'held') {
      // Check, lease, check again: a holder stores its token before it releases the lease, so a lease won just
      // after another container's release finds that container's token here rather than calling a second time.
      const stored = await this.readShared(target, keys);
      if (stored !== undefined && this.isUsable(target, stored) && !this.isDue(stored)) {
        await this.releaseLease(target, holder);
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
      const token = await this.fetchFromEndpoint(target, keys.credentials, deadline);
      this.remember(target, token.token);
      const stored = await this.writeShared(target, token.token, { ...keys, credentials: token.credentials });
      if (previous !== undefined) await this.endCooldown(target);
      if (stored?.outcome === 'revoked') {
        // An invalidation landed while the provider answered: the token predates it, so it is kept nowhere. The
        // requests waiting on it began before the invalidation and are answered with it.
        this.logger.info('token issued before an invalidation of its client; not kept', { client: target.clientName });
        this.noteRevocation(target.clientName, stored.revokedAt, this.clock.now());
      }
      return {
        token: token.token,
        cache: replacing ? 'refreshed' : 'fetched',
        upstreamMs: this.clock.now() - started,
      };
    } catch (error) {
      await this.startCooldown(target, error, previous);
      if (fallback !== undefined && this.isServable(fallback)) return this.serveStale(target, fallback, error);
      throw error;
    } finally {
      if (state === 'held') await this.releaseLease(target, holder);
    }
  }

  /**
   * A failure that asking again cannot mend soon (invalid_client, 429, 5xx, no answer) stops every container
   * calling the client's token endpoint until the cooldown lapses: the provider's Retry-After, or a pause that
   * doubles with each failure in a row. Warm keys keep serving their current token meanwhile.
   */
  private async startCooldown(target: Target, error: unknown, previous: Cooldown | undefined): Promise<void> {
    const reason = cooldownReasonOf(error);
    if (reason === undefined) return;
    const now = this.clock.now();
    const upstreamRetryAfterMs = error instanceof BrokerError ? error.upstreamRetryAfterMs : undefined;
    const cooldown = nextCooldown(reason, previous, upstreamRetryAfterMs, now);
    this.cooldowns.set(target.clientName, cooldown);
    this.metrics.count('Cooldowns', target.clientName);
    this.logger.warn('token endpoint failing; every container waits before calling it again', {
      client: target.clientName,
      reason,
      failures: cooldown.failures,
      waitSeconds: Math.ceil((cooldown.until - now) / 1000),
    });
    try {
      await this.cache.writeCooldown(target.clientName, cooldown);
    } catch (writeError) {
      this.sharedCacheFailed(target, 'cooldown write', writeError);
    }
  }

  private async endCooldown(target: Target): Promise<void> {
    this.cooldowns.delete(target.clientName);
    try {
      await this.cache.clearCooldown(target.clientName);
    } catch (error) {
      this.sharedCacheFailed(target, 'cooldown clear', error);
    }
  }

  private async readCooldown(target: Target): Promise<Cooldown | undefined> {
    try {
      return await this.cache.readCooldown(target.clientName);
    } catch (error) {
      this.sharedCacheFailed(target, 'cooldown read', error);
      return undefined;
    }
  }

  /** No call while the cooldown stands: the current token if there is one, otherwise a 503 that says when. */
  private skipForCooldown(target: Target, fallback: CachedToken | undefined, cooldown: Cooldown): Loaded {
    this.metrics.count('CooldownSkips', target.clientName);
    const refusal = coolingDownError(target.clientName, cooldown, this.clock.now());
    if (fallback !== undefined && this.isServable(fallback)) return this.serveStale(target, fallback, refusal);
    throw refusal;
  }

  /**
   * An invalid_client answer may mean a rotation is under way: the secret re-read (it may have just become
   * current), then the rotation's pending and previous secrets, each tried once. The token is sealed under the
   * current secret whichever one the provider took, since that is what every container reads.
   */
  private async fetchFromEndpoint(
    target: Target,
    credentials: ClientCredentials,
    deadline: number,
  ): Promise<{ token: CachedToken; credentials: ClientCredentials }> {
    try {
      return { token: await this.callEndpoint(target, credentials, deadline), credentials };
    } catch (error) {
      if (!isInvalidClient(error)) throw error;
      const reread = await this.secrets.getCredentials(target.clientName, target.client, { refresh: true });
      const tried = [credentials];
      if (!sameCredentials(reread, credentials)) {
        // The retry belongs to the same budget: past its deadline the lease may be someone else's.
        if (this.clock.now() >= deadline) throw error;
        this.metrics.count('SecretReloads', target.clientName);
        this.logger.info('token endpoint refused the client; retrying with the re-read secret', {
          client: target.clientName,
        });
        try {
          return { token: await this.callEndpoint(target, reread, deadline), credentials: reread };
        } catch (retryError) {
          if (!isInvalidClient(retryError)) throw retryError;
          tried.push(reread);
        }
      }
      const rotation = await this.secrets.getRotationCredentials(target.clientName, target.client);
      for (const { stage, credentials: candidate } of rotation) {
        if (tried.some((done) => sameCredentials(done, candidate))) continue;
        if (this.clock.now() >= deadline) break;
        tried.push(candidate);
        try {
          const token = await this.callEndpoint(target, candidate, deadline);
          this.metrics.count('SecretFallbacks', target.clientName);
          this.logger.warn(
            stage === 'pending'
              ? "token endpoint took the client's pending secret, not its current one: finish the rotation"
              : "token endpoint took the client's previous secret, not its current one: the provider has not taken the new secret yet",
            { client: target.clientName, secretStage: stage },
          );
          return { token, credentials: reread };
        } catch (fallbackError) {
          if (!isInvalidClient(fallbackError)) throw fallbackError;
        }
      }
      throw error;
    }
  }

  private async callEndpoint(target: Target, credentials: ClientCredentials, deadline: number): Promise<CachedToken> {
    // Lifetime counts from before the request is sent, so the broker never believes a token lives longer than it does.
    await this.takeIssuance(target);
    const issuedAt = this.clock.now();
    this.metrics.count('TokenEndpointCalls', target.clientName);
    let issued: Awaited<ReturnType<TokenEndpoint['fetchToken']>>;
    try {
      issued = await this.endpoint.fetchToken({
        clientName: target.clientName,
        client: target.client,
        credentials,
        scope: target.scopes.join(' '),
        ...target.parameters,
        deadline,
      });
    } catch (error) {
      this.metrics.count('TokenEndpointFailures', target.clientName);
      throw error;
    } finally {
      this.metrics.upstreamLatency(this.clock.now() - issuedAt, target.clientName);
    }
    this.checkGrantedScope(target, issued.scope);
    return {
      accessToken: issued.accessToken,
      tokenType: 'Bearer',
      // RFC 6749 section 5.1: an omitted scope means the requested scope was granted as asked.
      scope: issued.scope ?? target.scopes.join(' '),
      issuedAt,
      expiresAt: issuedAt + issued.expiresIn * 1000,
    };
  }

  /**
   * Counts the call against the client's hourly budget, fleet-wide, or refuses it once the budget is spent. The
   * table being unreachable lets the call go: the lease and single flight still bound it, and refusing would
   * turn a table outage into a token outage.
   */
  private async takeIssuance(target: Target): Promise<void> {
    const limit = target.client.maxTokenRequestsPerHour ?? defaultMaxTokenRequestsPerHour;
    const now = this.clock.now();
    const window = budgetWindowOf(now);
    if ((this.budgetSpentUntil.get(target.clientName) ?? 0) > now) {
      throw issuanceBudgetExhausted(target.clientName, limit, window.end, now);
    }
    let used: number | undefined;
    try {
      used = await this.cache.countIssuance(target.clientName, window, limit);
    } catch (error) {
      this.sharedCacheFailed(target, 'issuance count', error);
      return;
    }
    if (used === undefined) {
      this.budgetSpentUntil.set(target.clientName, window.end);
      this.metrics.count('IssuanceBudgetExhausted', target.clientName);
      this.logger.error('token request refused: the client made its maxTokenRequestsPerHour', {
        client: target.clientName,
        maxTokenRequestsPerHour: limit,
        resumesInSeconds: Math.ceil((window.end - now) / 1000),
      });
      throw issuanceBudgetExhausted(target.clientName, limit, window.end, now);
    }
    const percent = (100 * used) / limit;
    this.metrics.issuanceBudgetUsed(percent, target.clientName);
    // The first call past the share the alarm watches: one line per client and hour, naming the client.
    if (used === Math.floor((limit * issuanceBudgetWarnPercent) / 100) + 1) {
      this.logger.warn('client has made most of its token requests for this hour', {
        client: target.clientName,
        used,
        maxTokenRequestsPerHour: limit,
      });
    }
  }

  /**
   * A token carrying a scope the client is not configured for is refused, whatever the server meant by it:
   * the broker hands out nothing beyond the registry. The server's scope string is not repeated (it is not ours
   * to echo); an omitted scope means the request was granted as asked (RFC 6749 section 5.1).
   */
  private checkGrantedScope(target: Target, granted: string | undefined): void {
    if (granted === undefined) return;
    const outside = scopesOutside(normalizeScope(granted), target.client.scopes).length;
    if (outside === 0) return;
    this.metrics.count('TokenEndpointFailures', target.clientName);
    this.logger.warn('token endpoint granted scopes outside the client configuration; token refused', {
      client: target.clientName,
      scopesOutside: outside,
    });
    throw new BrokerError(
      'upstream_error',
      `the token endpoint of client ${target.clientName} granted ${outside} scope${outside === 1 ? '' : 's'} ` +
        "outside the client's configured scopes; the token was refused",
    );
  }

  /**
   * Waits while another container holds the lease. Each look reads the lease, then the token: a holder
   * stores its token before it releases the lease, so a released lease with no token after it means the
   * holder failed, and its failure is answered without calling again. A lease that lapses within one lease
   * period of the wait (its holder died) is taken over by the one waiter whose conditional write wins; the
   * others wait on for the new holder, at most its upstream budget more. Either way a request ends within
   * what checkTimeBudget allows for. Resolves with the holder's token, or with the lease when this container
   * took it over.
   */
  private async awaitHolder(target: Target, keys: Keys, holder: string): Promise<CachedToken | GoAhead> {
    this.metrics.count('LeaseWaits', target.clientName);
    const takeoverUntil = this.clock.now() + this.leaseMs + leaseWaitSlackMs;
    const giveUpAt = takeoverUntil + this.upstreamBudgetMs + leaseWaitSlackMs;
    for (;;) {
      await this.clock.sleep(leasePollMs / 2 + Math.random() * leasePollMs);
      const lease = await this.readLease(target);
      const stored = await this.readShared(target, keys);
      if (stored !== undefined && this.isUsable(target, stored)) {
        this.remember(target, stored);
        return stored;
      }
      if (lease === undefined) {
        throw new BrokerError(
          'unavailable',
          `another request for a token of client ${target.clientName} just failed; retry in a moment`,
        );
      }
      const now = this.clock.now();
      if (lease !== 'unreadable' && lease.until < now && now < takeoverUntil) {
        const takeover = await this.acquireLease(target, holder);
        if (takeover.state === 'held') {
          this.logger.info('took over the lapsed lease of another container', { client: target.clientName });
          return takeover;
        }
      }
      if (this.clock.now() >= giveUpAt) {
        throw new BrokerError(
          'unavailable',
          `another request for a token of client ${target.clientName} has not finished; retry in a moment`,
        );
      }
    }
  }

  /** Without the table the lease cannot be known; the container goes ahead alone (single flight still holds). */
  private async acquireLease(target: Target, holder: string): Promise<LeaseAttempt> {
    const now = this.clock.now();
    const deadline = now + this.upstreamBudgetMs;
    try {
      const held = await this.cache.acquireLease(target.key, holder, now, now + this.leaseMs);
      return held ? { state: 'held', deadline } : { state: 'taken' };
    } catch (error) {
      this.sharedCacheFailed(target, 'lease', error);
      return { state: 'unknown', deadline };
    }
  }

  private async readLease(target: Target): Promise<TokenLease | undefined | 'unreadable'> {
    try {
      return await this.cache.readLease(target.key);
    } catch (error) {
      this.sharedCacheFailed(target, 'lease read', error);
      return 'unreadable';
    }
  }

  private async releaseLease(target: Target, holder: string): Promise<void> {
    try {
      await this.cache.releaseLease(target.key, holder);
    } catch (error) {
      // The lease lapses by itself.
      this.sharedCacheFailed(target, 'lease release', error);
    }
  }

  private async readShared(target: Target, keys: Keys): Promise<CachedToken | undefined> {
    return this.open(target, keys, await this.readStored(target));
  }

  private async readStored(target: Target): Promise<StoredToken | undefined> {
    try {
      return await this.cache.get(target.key);
    } catch (error) {
      this.sharedCacheFailed(target, 'read', error);
      return undefined;
    }
  }

  /**
   * A token sealed under another secret or sealing key (rotated since), or in another format, does not open:
   * it is a miss, as is a revoked one.
   */
  private open(target: Target, keys: Keys, stored: StoredToken | undefined): CachedToken | undefined {
    if (stored === undefined || stored.format !== sealFormat) return undefined;
    const token = unseal(this.sealingKey(target, keys), target.key, stored.sealed);
    return token === undefined || this.isRevoked(target.clientName, token) ? undefined : token;
  }

  private async writeShared(target: Target, token: CachedToken, keys: Keys): Promise<PutOutcome | undefined> {
    try {
      return await this.cache.put(
        target.key,
        {
          format: sealFormat,
          sealed: seal(this.sealingKey(target, keys), target.key, token),
          expiresAt: token.expiresAt,
        },
        { clientName: target.clientName, issuedAt: token.issuedAt },
      );
    } catch (error) {
      this.sharedCacheFailed(target, 'write', error);
      return undefined;
    }
  }

  private sealingKey(target: Target, keys: Keys): SealingKey {
    return deriveSealingKey(keys.sealingKey, target.key, secretMaterialOf(keys.credentials));
  }

  private sharedCacheFailed(target: Pick<Target, 'clientName'>, operation: string, error: unknown): void {
    this.metrics.count('SharedCacheErrors', target.clientName);
    this.logger.warn(`token table ${operation} failed; continuing with this container's memory`, {
      client: target.clientName,
      errorName: error instanceof Error ? error.name : typeof error,
    });
  }

  /** A token issued at or before a revocation this container knows of is not kept (it is not served either). */
  private remember(target: Target, token: CachedToken): void {
    if (this.isRevoked(target.clientName, token)) return;
    const key = target.key;
    const now = this.clock.now();
    for (const [otherKey, other] of this.memory) {
      if (other.expiresAt <= now) this.memory.delete(otherKey);
    }
    this.memory.set(key, token);
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

function isInvalidClient(error: unknown): boolean {
  return error instanceof BrokerError && error.upstreamError === 'invalid_client';
}

function sameCredentials(a: ClientCredentials, b: ClientCredentials): boolean {
  return a.clientId === b.clientId && secretMaterialOf(a) === secretMaterialOf(b);
}
