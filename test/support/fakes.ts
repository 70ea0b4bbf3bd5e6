import type {
  BrokerLogger,
  CachedToken,
  ClientCredentials,
  Clock,
  IssuedToken,
  SecretSource,
  TokenCache,
  TokenEndpoint,
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
}

export class MapTokenCache implements TokenCache {
  readonly items = new Map<string, CachedToken>();
  gets = 0;
  puts = 0;
  failing = false;
  async get(cacheKey: string): Promise<CachedToken | undefined> {
    this.gets++;
    if (this.failing) throw Object.assign(new Error('table unreachable'), { name: 'ServiceUnavailable' });
    return this.items.get(cacheKey);
  }
  async put(cacheKey: string, token: CachedToken): Promise<void> {
    this.puts++;
    if (this.failing) throw Object.assign(new Error('table unreachable'), { name: 'ServiceUnavailable' });
    this.items.set(cacheKey, token);
  }
}

export class FixedSecretSource implements SecretSource {
  reads = 0;
  constructor(private readonly credentials: ClientCredentials) {}
  async getCredentials(): Promise<ClientCredentials> {
    this.reads++;
    return this.credentials;
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
