import { randomBytes } from 'node:crypto';
import type { Cooldown } from '../../lambdas/core/cooldown.js';
import { BrokerError } from '../../lambdas/core/errors.js';
import type {
  BrokerLogger,
  BrokerMetric,
  BrokerMetrics,
  ClientCredentials,
  Clock,
  IssuedToken,
  PutOutcome,
  RotationCredentials,
  SealingKeySource,
  SecretSource,
  StoredToken,
  TokenCache,
  TokenEndpoint,
  TokenLease,
  TokenRequest,
} from '../../lambdas/core/ports.js';

/** A clock that moves only when told to. */
export class FakeClock implements Clock {
  constructor(private current = Date.UTC(2026, 10, 29, 12, 0, 0)) {}
  now(): number {
    return this.current;
  }
  advance(ms: number): void {
    this.current += ms;
  }
  /** Time jumps ahead at once; a macrotask turn lets other callers run meanwhile. */
  async sleep(ms: number): Promise<void> {
    this.current += ms;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** The shared tier in a Map: sealed tokens and leases with the same rules as the DynamoDB adapter. */
export class MapTokenCache implements TokenCache {
  readonly items = new Map<string, StoredToken>();
  readonly leases = new Map<string, { holder: string; until: number }>();
  gets = 0;
  puts = 0;
  failing = false;
  private check(): void {
    if (this.failing) throw Object.assign(new Error('table unreachable'), { name: 'ServiceUnavailable' });
  }
  async get(cacheKey: string): Promise<StoredToken | undefined> {
    this.gets++;
    this.check();
    return this.items.get(cacheKey);
  }
  /** Every put's outcome, in order. */
  readonly putOutcomes: PutOutcome[] = [];
  async put(
    cacheKey: string,
    token: StoredToken,
    issued: { clientName: string; issuedAt: number },
  ): Promise<PutOutcome> {
    this.puts++;
    this.check();
    const revokedAt = this.revocations.get(issued.clientName);
    const existing = this.items.get(cacheKey);
    let outcome: PutOutcome = { outcome: 'not-stored' };
    if (revokedAt !== undefined && issued.issuedAt <= revokedAt) outcome = { outcome: 'revoked', revokedAt };
    else if (existing === undefined || existing.expiresAt < token.expiresAt) {
      this.items.set(cacheKey, token);
      outcome = { outcome: 'stored' };
    }
    this.putOutcomes.push(outcome);
    return outcome;
  }
  /** Calls to acquireLease, won or lost. */
  leaseAttempts = 0;
  async acquireLease(cacheKey: string, holder: string, now: number, until: number): Promise<boolean> {
    this.leaseAttempts++;
    this.check();
    const lease = this.leases.get(cacheKey);
    if (lease !== undefined && lease.until >= now && lease.holder !== holder) return false;
    this.leases.set(cacheKey, { holder, until });
    return true;
  }
  async releaseLease(cacheKey: string, holder: string): Promise<void> {
    this.check();
    if (this.leases.get(cacheKey)?.holder === holder) this.leases.delete(cacheKey);
  }
  leaseReads = 0;
  async readLease(cacheKey: string): Promise<TokenLease | undefined> {
    this.leaseReads++;
    this.check();
    const lease = this.leases.get(cacheKey);
    return lease === undefined ? undefined : { ...lease };
  }
  readonly revocations = new Map<string, number>();
  revocationReads = 0;
  async revokeClient(clientName: string, at: number): Promise<number> {
    this.check();
    this.revocations.set(clientName, at);
    const keys = [...this.items.keys()].filter((key) => key.startsWith(`${clientName}#`));
    for (const key of keys) this.items.delete(key);
    return keys.length;
  }
  async revokedAt(clientName: string): Promise<number | undefined> {
    this.revocationReads++;
    this.check();
    return this.revocations.get(clientName);
  }
  readonly cooldowns = new Map<string, Cooldown>();
  cooldownReads = 0;
  async readCooldown(clientName: string): Promise<Cooldown | undefined> {
    this.cooldownReads++;
    this.check();
    const cooldown = this.cooldowns.get(clientName);
    return cooldown === undefined ? undefined : { ...cooldown };
  }
  async writeCooldown(clientName: string, cooldown: Cooldown): Promise<void> {
    this.check();
    this.cooldowns.set(clientName, { ...cooldown });
  }
  async clearCooldown(clientName: string): Promise<void> {
    this.check();
    this.cooldowns.delete(clientName);
  }
  /** Calls counted per client and window start. */
  readonly issuance = new Map<string, number>();
  async countIssuance(clientName: string, window: { start: number }, limit: number): Promise<number | undefined> {
    this.check();
    const key = `${clientName}@${window.start}`;
    const used = this.issuance.get(key) ?? 0;
    if (used >= limit) return undefined;
    this.issuance.set(key, used + 1);
    return used + 1;
  }
}

/** A sealing key fixed at construction (random by default), counting its reads. */
export class FixedSealingKey implements SealingKeySource {
  reads = 0;
  failing = false;
  constructor(public key: Uint8Array = randomBytes(32)) {}
  async getSealingKey(): Promise<Uint8Array> {
    this.reads++;
    // As the Secrets Manager adapter fails when it has no key to fall back on.
    if (this.failing) throw new BrokerError('unavailable', 'the token sealing key could not be read');
    return this.key;
  }
}

export class FixedSecretSource implements SecretSource {
  reads = 0;
  refreshes = 0;
  failing = false;
  /** What a rotation under way offers besides the current credentials. */
  rotation: RotationCredentials[] = [];
  rotationReads = 0;
  constructor(public credentials: ClientCredentials) {}
  async getRotationCredentials(): Promise<RotationCredentials[]> {
    this.rotationReads++;
    return this.rotation;
  }
  async getCredentials(_name: string, _client: unknown, options?: { refresh?: boolean }): Promise<ClientCredentials> {
    this.reads++;
    if (options?.refresh) this.refreshes++;
    if (this.failing) throw Object.assign(new Error('secrets unreachable'), { name: 'InternalServiceError' });
    return this.credentials;
  }
}

export class CountingMetrics implements BrokerMetrics {
  readonly counts = new Map<BrokerMetric, number>();
  readonly latencies: number[] = [];
  count(metric: BrokerMetric): void {
    this.counts.set(metric, (this.counts.get(metric) ?? 0) + 1);
  }
  upstreamLatency(ms: number): void {
    this.latencies.push(ms);
  }
  readonly budgetUsage: number[] = [];
  issuanceBudgetUsed(percent: number): void {
    this.budgetUsage.push(percent);
  }
  of(metric: BrokerMetric): number {
    return this.counts.get(metric) ?? 0;
  }
}

type Answer = (request: TokenRequest, call: number) => Promise<IssuedToken>;

/** A token endpoint that issues numbered tokens, or does whatever the test tells it to. */
export class ScriptedTokenEndpoint implements TokenEndpoint {
  readonly requests: TokenRequest[] = [];
  constructor(
    private answer: Answer = async (request, call) => ({
      accessToken: `token-${call}`,
      tokenType: 'Bearer',
      expiresIn: 3600,
      scope: request.scope,
    }),
  ) {}
  get calls(): number {
    return this.requests.length;
  }
  answerWith(answer: Answer): void {
    this.answer = answer;
  }
  fetchToken(request: TokenRequest): Promise<IssuedToken> {
    this.requests.push(request);
    return this.answer(request, this.requests.length);
  }
}

export class RecordingLogger implements BrokerLogger {
  readonly lines: { level: string; message: string; attributes: Record<string, unknown> }[] = [];
  debug(message: string, attributes: Record<string, unknown>): void {
    this.lines.push({ level: 'debug', message, attributes });
  }
  info(message: string, attributes: Record<string, unknown>): void {
    this.lines.push({ level: 'info', message, attributes });
  }
  warn(message: string, attributes: Record<string, unknown>): void {
    this.lines.push({ level: 'warn', message, attributes });
  }
  error(message: string, attributes: Record<string, unknown>): void {
    this.lines.push({ level: 'error', message, attributes });
  }
}

/** A promise whose settlement the test controls. */
export function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
