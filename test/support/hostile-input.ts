/**
 * What the hostile-input suites (test/integration/hostile-input-*.test.ts, issue #4) share: the oracle, the scope
 * generators both entry points read, and the checks of an answer, against the broker harness's real handler,
 * dynalite, oidc-provider over TLS and the Secrets Manager stand-in (test/support/broker-harness.ts).
 *
 * Whatever arrives, the answer is a 4xx with an OAuth-style body (exactly `error` and `error_description`,
 * both non-empty), or — for a request that is in fact valid — a token whose scope the client is allowed.
 * Never a 5xx, never a crash, never a token for a scope the client may not have. A direct invocation
 * either returns a token or throws an Error named by a 4xx code.
 *
 * Each generated case carries an oracle (an `Expectation`) built from how it was generated: the checks a
 * request fails decide which codes may answer it; a request that fails none must get a token of exactly
 * the scope set it asked for; a request of unclear meaning (random text, duplicate JSON keys, a BOM, an
 * odd content type) may get either, but a token only within the client's allowed scopes. Valid requests
 * are mixed in on purpose; after the first, they are cache hits, so the token endpoint sees at most one
 * request per distinct allowed scope set.
 *
 * Runs use fast-check's random seed; a failure prints the seed and path to replay it (`fc.assert(…,
 * { seed, path })`).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import fc from 'fast-check';
import { maxScopeLength } from '../../lambdas/contract.js';
import type { ClientConfig } from '../../lambdas/core/config.js';
import { type ErrorCode, errorStatus } from '../../lambdas/core/errors.js';
import { environmentVariables } from '../../lambdas/entry/environment.js';
import { apiGatewayAliasName } from '../../lambdas/entry/invoke.js';
import { type BrokerHarness, functionArn, startBrokerHarness } from './broker-harness.js';
import { assertNoLeak } from './logs.js';

/** Generated cases per property. */
export const numRuns = 2_500;

export const read = 'system/*.read';
export const write = 'system/*.write';
/** Clients of the harness whose upstream works; the others (revoked, missing, stalled) fail by design. */
const servedClients = ['bwell', 'basic', 'discovered'] as const;

// ---------------------------------------------------------------------------------------------------------
// The oracle
// ---------------------------------------------------------------------------------------------------------

export type Codes = ReadonlySet<ErrorCode> | 'any';

export type Expectation =
  /** Must be served: a token of exactly this scope set. */
  | { kind: 'token'; client: string; scopes: string[] }
  /** Must be refused with a 4xx whose code is one of these. */
  | { kind: 'refused'; codes: Codes }
  /** May be served (within the allowed scopes) or refused with one of these codes. */
  | { kind: 'either'; codes: Codes };

/** Collects what a generated request fails: definitely (`fail`) or possibly (`maybe`). */
export class Verdict {
  private readonly codes = new Set<ErrorCode>();
  private anyCode = false;
  private mayPass = true;

  fail(code: ErrorCode): void {
    this.codes.add(code);
    this.mayPass = false;
  }
  failAny(): void {
    this.anyCode = true;
    this.mayPass = false;
  }
  maybe(...codes: ErrorCode[]): void {
    for (const code of codes) this.codes.add(code);
  }
  maybeAny(): void {
    this.anyCode = true;
  }
  get clean(): boolean {
    return this.codes.size === 0 && !this.anyCode;
  }
  get passable(): boolean {
    return this.mayPass;
  }
  finish(token: { client: string; scopes: string[] } | undefined): Expectation {
    const codes: Codes = this.anyCode ? 'any' : this.codes;
    if (!this.mayPass) return { kind: 'refused', codes };
    if (this.clean) {
      assert.ok(token, 'oracle: a request that fails no check names its client and scope');
      return { kind: 'token', ...token };
    }
    return { kind: 'either', codes };
  }
}

export const isServed = (client: string) => (servedClients as readonly string[]).includes(client);

function scopeSet(scope: string): string[] {
  return [...new Set(scope.split(' ').filter((part) => part !== ''))].sort();
}

/** The alias Lambda reports in the invoked ARN (arn:aws:lambda:region:account:function:name[:qualifier]). */
export function aliasIn(qualifier: string | undefined): string | undefined {
  if (qualifier === undefined) return undefined;
  const field = `${functionArn}:${qualifier}`.split(':')[7];
  if (field === undefined || field === '$LATEST' || /^\d+$/.test(field)) return undefined;
  return field;
}

// ---------------------------------------------------------------------------------------------------------
// Generators: scopes
// ---------------------------------------------------------------------------------------------------------

export const servedName = fc.constantFrom(...servedClients);

const nearMissScopes = [
  'admin',
  'openid',
  'offline_access',
  'system/*.*',
  'system/*',
  '*',
  'system/*.READ',
  'SYSTEM/*.READ',
  'System/*.read',
  'system/*.read,system/*.write',
  'system/*.read;',
  'system/*.rea',
  'system/*.reads',
  'system//*.read',
  'patient/*.read',
  'user/*.write',
  'system/Patient.read',
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'hasOwnProperty',
  'system/*.read#',
  'system%2F*.read',
];

/** Space-separated lists of allowed and near-miss scopes, with duplicates and runs of spaces. */
export const scopeList = fc
  .record({
    tokens: fc.array(
      fc.tuple(
        fc.oneof(
          { weight: 4, arbitrary: fc.constantFrom(read, write) },
          { weight: 2, arbitrary: fc.constantFrom(...nearMissScopes) },
        ),
        fc.constantFrom(' ', ' ', '  ', '   '),
      ),
      { minLength: 1, maxLength: 6 },
    ),
    lead: fc.constantFrom('', '', ' ', '   '),
    trimEnd: fc.boolean(),
  })
  .map(({ tokens, lead, trimEnd }) => {
    const scope = lead + tokens.map(([token, space]) => token + space).join('');
    return trimEnd ? scope.trimEnd() : scope;
  });

/** Control characters, invisible and separator code points, the two excluded ASCII characters, lone surrogates. */
const oddCharacter = fc.oneof(
  fc.integer({ min: 0, max: 0x1f }).map((code) => String.fromCharCode(code)),
  fc.constantFrom(
    '\u007f',
    '\u0085',
    '\u00a0',
    '\u2028',
    '\u2029',
    '\ufeff',
    '\u200b',
    '\u200d',
    '"',
    '\\',
    '\ud800',
    '\udfff',
    '\u0301',
  ),
);

const scopeWithOddCharacter = fc.tuple(scopeList, oddCharacter, fc.nat()).map(([scope, odd, at]) => {
  const index = at % (scope.length + 1);
  return scope.slice(0, index) + odd + scope.slice(index);
});

const unicodeScope = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom(
    '\u0455ystem/*.read', // Cyrillic dze
    'system/\uff0a.read', // fullwidth asterisk
    '\uff53\uff59\uff53\uff54\uff45\uff4d/*.read',
    'system/*.read\u0301',
    'system/*.rea\u0501',
    '\u7cfb\u7edf/*.read',
    '\u{1f600}',
    'system/*.read\u{1f600}',
    '\u017fystem/*.read', // long s, upper-cases to S
    `${read}\u200b ${write}`,
    `${read}\u3000${write}`, // ideographic space
  ),
);

/** Up to and past the 1,024-character limit, and 10,000 characters. */
const longScope = fc.oneof(
  fc.constant('a'.repeat(10_000)),
  fc.integer({ min: 1_000, max: 10_000 }).map((length) => read + ' '.repeat(length - read.length)),
  fc.constantFrom(1_023, 1_024, 1_025).map((length) => ' '.repeat(length - read.length) + read),
  fc.integer({ min: 60, max: 800 }).map((count) => Array.from({ length: count }, () => read).join(' ')),
  fc.string({ minLength: 10_000, maxLength: 10_000 }),
);

export const scopeString = fc.oneof(
  { weight: 5, arbitrary: scopeList },
  { weight: 3, arbitrary: scopeWithOddCharacter },
  { weight: 2, arbitrary: unicodeScope },
  { weight: 2, arbitrary: longScope },
  { weight: 1, arbitrary: fc.constantFrom('', ' ', '     ') },
  { weight: 1, arbitrary: fc.string({ maxLength: 60 }) },
);

export const jsonJunk = fc.jsonValue({ maxDepth: 3 });
/** JSON values that are not strings, where a string is expected. */
export const nonStringJson = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.constantFrom(read, write), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }),
  fc.constant({ toString: read }),
  fc.constant('{"__proto__":{"polluted":"yes"}}').map((text) => JSON.parse(text) as unknown),
);
// ---------------------------------------------------------------------------------------------------------
// Checking answers
// ---------------------------------------------------------------------------------------------------------

const tokenFields = ['access_token', 'expires_in', 'scope', 'token_type'];
export const errorFields = ['error', 'error_description'];

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function assertScopeMatches(actual: string[], expectation: Expectation, context: string): void {
  if (expectation.kind === 'token') {
    assert.deepEqual(actual, expectation.scopes, `${context}: the token's scope is the requested set`);
  }
}

function assertCode(code: unknown, codes: Codes, context: string): void {
  if (codes !== 'any') {
    assert.ok(codes.has(code as ErrorCode), `${context}: refused with ${String(code)}, expected one of ${[...codes]}`);
  }
}

export interface Tally {
  served: number;
  refused: Map<string, number>;
}
export const newTally = (): Tally => ({ served: 0, refused: new Map() });
const countRefusal = (tally: Tally, code: string) => tally.refused.set(code, (tally.refused.get(code) ?? 0) + 1);
export const describeTally = (tally: Tally) =>
  `${tally.served} served, refused: ${[...tally.refused].map(([code, n]) => `${code} ${n}`).join(', ')}`;

function prototypeSnapshot(): Map<string, PropertyDescriptorMap> {
  const prototypes: [string, object][] = [
    ['Object.prototype', Object.prototype],
    ['Array.prototype', Array.prototype],
    ['Function.prototype', Function.prototype],
    ['String.prototype', String.prototype],
  ];
  return new Map(prototypes.map(([name, proto]) => [name, Object.getOwnPropertyDescriptors(proto)]));
}

/**
 * The broker harness under hostile input, with what a suite's checks need: its registry, every token it served
 * (for redacting assertion messages and for the log-leak check) and the prototypes as they were at the start.
 */
export class HostileInputBroker {
  private readonly tokensSeen = new Set<string>();

  private constructor(
    readonly harness: BrokerHarness,
    private readonly registry: Record<string, ClientConfig>,
    private readonly prototypesBefore: Map<string, PropertyDescriptorMap>,
  ) {}

  static async start(): Promise<HostileInputBroker> {
    const harness = await startBrokerHarness();
    const registry = JSON.parse(process.env[environmentVariables.clients] ?? '{}') as Record<string, ClientConfig>;
    return new HostileInputBroker(harness, registry, prototypeSnapshot());
  }

  close(): Promise<void> {
    return this.harness.close();
  }

  /** Every refusal since `logsBefore` (an offset into the captured output) was logged, and none repeats `marker`. */
  assertRefusalsLoggedWithout(logsBefore: number, refusals: number, marker: string): void {
    const logs = this.harness.output.text().slice(logsBefore);
    assert.equal(logs.split('token request refused').length - 1, refusals, 'every refusal was logged');
    assert.ok(
      !logs.includes(marker),
      `a log line repeats the client name: ${shown(logs.slice(logs.indexOf(marker) - 100))}`,
    );
  }

  isRegistered(client: string): boolean {
    return Object.hasOwn(this.registry, client);
  }

  /**
   * The scope contract: absent means the client's default (none at all when it has none); otherwise at most
   * 1,024 characters of space-separated scopes, at least one, every one of them allowed to the client.
   */
  resolveExpectedScope(client: string, requested: string | undefined): string[] | undefined {
    const config = this.registry[client] as ClientConfig;
    // Without a default the broker asks for every allowed scope, so that a request always names a scope.
    if (requested === undefined) return scopeSet(config.defaultScope ?? config.scopes.join(' '));
    if (requested.length > maxScopeLength) return undefined;
    const scopes = scopeSet(requested);
    if (scopes.length === 0 || scopes.some((scope) => !config.scopes.includes(scope))) return undefined;
    return scopes;
  }

  /** How many distinct keys valid requests can fill: every non-empty allowed subset (an absent scope is one of them). */
  private distinctScopeSets(): number {
    return servedClients.reduce((sum, name) => {
      const config = this.registry[name] as ClientConfig;
      return sum + 2 ** config.scopes.length - 1;
    }, 0);
  }

  /** For assertion messages: never a token. */
  redacted(value: unknown): string {
    let text = JSON.stringify(value, (key, inner) => (key === 'access_token' ? '<redacted>' : inner)) ?? String(value);
    // Tokens also travel inside JSON-in-a-string (an HTTP answer's body).
    for (const token of this.tokensSeen) text = text.replaceAll(token, '<redacted>');
    return text.length > 600 ? `${text.slice(0, 600)}…` : text;
  }

  /** Remembers every token an answer carries, whatever its shape, for the log-leak check. */
  private collectTokens(answer: unknown): void {
    if (!isRecord(answer)) return;
    if (typeof answer.access_token === 'string' && answer.access_token !== '') this.tokensSeen.add(answer.access_token);
    if (typeof answer.body === 'string') {
      try {
        this.collectTokens(JSON.parse(answer.body));
      } catch {
        // not JSON: carries no token
      }
    }
  }

  /** A served token: the exact fields, and a scope the client is allowed. */
  private assertToken(json: unknown, client: unknown, context: string): string[] {
    assert.ok(isRecord(json), `${context}: the answer is an object`);
    assert.deepEqual(Object.keys(json).sort(), tokenFields, `${context}: a token answer has exactly ${tokenFields}`);
    assert.equal(json.token_type, 'Bearer', context);
    assert.ok(typeof json.access_token === 'string' && json.access_token !== '', `${context}: access_token`);
    assert.ok(typeof json.expires_in === 'number' && json.expires_in > 0, `${context}: expires_in`);
    assert.equal(typeof json.scope, 'string', `${context}: scope`);
    assert.ok(
      typeof client === 'string' && isServed(client),
      `${context}: a token was served for client ${this.redacted(client)}, which is not a working client`,
    );
    const allowed = (this.registry[client] as ClientConfig).scopes;
    const granted = scopeSet(json.scope as string);
    const notAllowed = granted.filter((scope) => !allowed.includes(scope));
    assert.deepEqual(notAllowed, [], `${context}: token carries scopes client ${client} is not allowed`);
    return granted;
  }

  /** An API Gateway event through the function's unqualified ARN, as API Gateway invokes it. */
  async checkHttp(event: APIGatewayProxyEvent, expectation: Expectation, tally: Tally): Promise<void> {
    // The handler must answer, not throw: a rejection fails the property as it is.
    const result = (await this.harness.invoke(event, apiGatewayAliasName)) as APIGatewayProxyResult;
    this.collectTokens(result);
    assert.ok(isRecord(result), 'the HTTP answer is an object');
    const context = `HTTP ${result.statusCode} ${this.redacted(result.body)} (expected ${this.redacted(expectation)})`;
    assert.equal(typeof result.body, 'string', context);
    assert.equal(result.headers?.['Content-Type'], 'application/json', context);
    assert.equal(result.headers?.['Cache-Control'], 'no-store', context);
    const json = JSON.parse(result.body) as Record<string, unknown>;
    if (result.statusCode === 200) {
      const granted = this.assertToken(json, event.pathParameters?.client, context);
      assert.notEqual(expectation.kind, 'refused', `${context}: served a request that must be refused`);
      assertScopeMatches(granted, expectation, context);
      tally.served++;
      return;
    }
    assert.ok(result.statusCode >= 400 && result.statusCode < 500, `${context}: a 4xx`);
    assert.notEqual(expectation.kind, 'token', `${context}: refused a valid request`);
    assert.deepEqual(Object.keys(json).sort(), errorFields, `${context}: an error has exactly ${errorFields}`);
    assert.ok(Object.hasOwn(errorStatus, json.error as string), `${context}: a known error code`);
    assert.equal(errorStatus[json.error as ErrorCode], result.statusCode, `${context}: the status follows the code`);
    assert.ok(typeof json.error_description === 'string' && json.error_description.trim() !== '', context);
    assertCode(json.error, (expectation as { codes: Codes }).codes, context);
    countRefusal(tally, json.error as string);
  }

  /** A direct invocation through `qualifier`: a token of the alias's client, or an Error named by a 4xx code. */
  async checkInvoke(event: unknown, qualifier: string | undefined, expectation: Expectation, tally: Tally) {
    let answer: unknown;
    let thrown: unknown;
    let threw = false;
    try {
      answer = await this.harness.invoke(event, qualifier);
    } catch (error) {
      thrown = error;
      threw = true;
    }
    this.collectTokens(answer);
    const outcome = threw ? `threw ${this.redacted(String(thrown))}` : `returned ${this.redacted(answer)}`;
    const context = `invoke via ${this.redacted(qualifier)}: ${outcome} (expected ${this.redacted(expectation)})`;
    if (!threw) {
      // Served through an alias: the token is the alias's client's.
      const granted = this.assertToken(answer, aliasIn(qualifier), context);
      assert.notEqual(expectation.kind, 'refused', `${context}: served an invocation that must be refused`);
      assertScopeMatches(granted, expectation, context);
      tally.served++;
      return;
    }
    assert.ok(thrown instanceof Error, `${context}: throws an Error`);
    const status: number | undefined = errorStatus[thrown.name as ErrorCode];
    assert.ok(
      Object.hasOwn(errorStatus, thrown.name) && status !== undefined && status >= 400 && status < 500,
      `${context}: the error is named by a 4xx code`,
    );
    assert.ok(thrown.message.trim() !== '', `${context}: the error has a message`);
    assert.notEqual(expectation.kind, 'token', `${context}: refused a valid invocation`);
    assertCode(thrown.name, (expectation as { codes: Codes }).codes, context);
    countRefusal(tally, thrown.name);
  }

  private assertUpstreamBounded(): void {
    const bound = this.distinctScopeSets();
    const requests = this.harness.oidc.tokenRequests();
    assert.ok(
      requests <= bound,
      `the token endpoint saw ${requests} requests; valid requests fill at most ${bound} keys`,
    );
  }

  /**
   * After a property run: the tally goes into the test report, the run must have generated both kinds of case
   * (`bothKinds` names them), and the token endpoint must not have seen more calls than valid requests allow.
   */
  concludeRun(t: TestContext, tally: Tally, bothKinds: string): void {
    t.diagnostic(describeTally(tally));
    assert.ok(tally.served > 0 && tally.refused.size > 0, `${bothKinds} were both generated`);
    this.assertUpstreamBounded();
  }

  /** The suite's last check: no prototype polluted, the token endpoint bounded, no secret or token in the logs. */
  assertUnpollutedAndLeakFree(): void {
    assert.deepEqual(prototypeSnapshot(), this.prototypesBefore, 'no prototype gained, lost or changed a property');
    const probe: Record<string, unknown> = {};
    for (const key of ['polluted', 'scope', 'client', 'admin', 'isAdmin']) {
      assert.equal(probe[key], undefined, `Object.prototype.${key} is not set`);
    }
    this.assertUpstreamBounded();
    const logs = this.harness.output.text();
    assert.ok(logs.includes('token request refused'), 'the refusals were logged');
    assertNoLeak(logs, [...this.harness.secrets(), ...this.tokensSeen]);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Malformed client names (issue #10)
// ---------------------------------------------------------------------------------------------------------

/**
 * Client names that are malformed or a megabyte long, each carrying `marker`, which no answer or log line may
 * repeat: the name was once echoed into the audit line and into `no client named "..."`, whatever its size.
 */
export function hostileClientNames(): { marker: string; names: string[] } {
  const marker = `hostile${randomBytes(6).toString('hex')}`;
  const names = [
    marker.repeat(Math.ceil(1_000_000 / marker.length)),
    `bwell' <script>${marker}</script>`,
    `bwell\n{"level":"ERROR","message":"${marker}"}`,
    `BWELL-${marker}`,
    `${marker}_admin`,
    `bwell-${marker}`.padEnd(65, '0'),
  ];
  return { marker, names };
}

/** At most 200 characters of `text`, for assertion messages about megabyte names. */
export const shown = (text: string) => (text.length > 200 ? `${text.slice(0, 200)}…` : text);
