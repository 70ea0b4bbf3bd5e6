/**
 * Issue #4, "Hostile input": property-based tests (fast-check) of both entry points, against the real
 * handler, dynalite, oidc-provider over TLS and the Secrets Manager stand-in (test/support/broker-harness.ts).
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
import { after, before, describe, it, type TestContext } from 'node:test';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import fc from 'fast-check';
import { type ClientConfig, clientNamePattern } from '../../lambdas/core/config.js';
import { type ErrorCode, errorStatus } from '../../lambdas/core/errors.js';
import { environmentVariables } from '../../lambdas/entry/environment.js';
import { tokenRoute } from '../../lambdas/entry/http.js';
import { apiGatewayAliasName } from '../../lambdas/entry/invoke.js';
import { apiGatewayEvent } from '../../lambdas/local/api-gateway-event.js';
import { type BrokerHarness, callerArn, functionArn, startBrokerHarness } from '../support/broker-harness.js';
import { assertNoLeak } from '../support/logs.js';

/** 4 × 2,500 generated cases per run, plus 2 × 500 for events no API Gateway would send. */
const numRuns = 2_500;
const forgedRuns = 500;
const malformedRuns = 500;

const read = 'system/*.read';
const write = 'system/*.write';
/** Clients of the harness whose upstream works; the others (revoked, missing, stalled) fail by design. */
const servedClients = ['bwell', 'basic', 'discovered'] as const;
const maxBodyBytes = 4096;
const maxScopeLength = 1024;

let harness: BrokerHarness;
let registry: Record<string, ClientConfig>;
const tokensSeen = new Set<string>();
let prototypesBefore: Map<string, PropertyDescriptorMap>;

// ---------------------------------------------------------------------------------------------------------
// The oracle
// ---------------------------------------------------------------------------------------------------------

type Codes = ReadonlySet<ErrorCode> | 'any';

type Expectation =
  /** Must be served: a token of exactly this scope set. */
  | { kind: 'token'; client: string; scopes: string[] }
  /** Must be refused with a 4xx whose code is one of these. */
  | { kind: 'refused'; codes: Codes }
  /** May be served (within the allowed scopes) or refused with one of these codes. */
  | { kind: 'either'; codes: Codes };

/** Collects what a generated request fails: definitely (`fail`) or possibly (`maybe`). */
class Verdict {
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

const isServed = (client: string) => (servedClients as readonly string[]).includes(client);
const isRegistered = (client: string) => Object.hasOwn(registry, client);

function scopeSet(scope: string): string[] {
  return [...new Set(scope.split(' ').filter((part) => part !== ''))].sort();
}

/**
 * The scope contract: absent means the client's default (none at all when it has none); otherwise at most
 * 1,024 characters of space-separated scopes, at least one, every one of them allowed to the client.
 */
function resolveExpectedScope(client: string, requested: string | undefined): string[] | undefined {
  const config = registry[client] as ClientConfig;
  // Without a default the broker asks for every allowed scope, so that a request always names a scope.
  if (requested === undefined) return scopeSet(config.defaultScope ?? config.scopes.join(' '));
  if (requested.length > maxScopeLength) return undefined;
  const scopes = scopeSet(requested);
  if (scopes.length === 0 || scopes.some((scope) => !config.scopes.includes(scope))) return undefined;
  return scopes;
}

/** How many distinct keys valid requests can fill: every non-empty allowed subset (an absent scope is one of them). */
function distinctScopeSets(): number {
  return servedClients.reduce((sum, name) => {
    const config = registry[name] as ClientConfig;
    return sum + 2 ** config.scopes.length - 1;
  }, 0);
}

// ---------------------------------------------------------------------------------------------------------
// Generators: scopes
// ---------------------------------------------------------------------------------------------------------

const servedName = fc.constantFrom(...servedClients);

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
const scopeList = fc
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

const scopeString = fc.oneof(
  { weight: 5, arbitrary: scopeList },
  { weight: 3, arbitrary: scopeWithOddCharacter },
  { weight: 2, arbitrary: unicodeScope },
  { weight: 2, arbitrary: longScope },
  { weight: 1, arbitrary: fc.constantFrom('', ' ', '     ') },
  { weight: 1, arbitrary: fc.string({ maxLength: 60 }) },
);

const jsonJunk = fc.jsonValue({ maxDepth: 3 });
/** JSON values that are not strings, where a string is expected. */
const nonStringJson = fc.oneof(
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
// Generators: HTTP bodies, content types, encodings
// ---------------------------------------------------------------------------------------------------------

type BodyMeaning =
  /** A JSON object without fields: the client's default scope. */
  | { kind: 'default' }
  /** A JSON object whose only field is a string `scope`. */
  | { kind: 'scope'; scope: string }
  /** Not a JSON object of the one string field `scope`. */
  | { kind: 'invalid' }
  /** Meaning not pinned down by the contract (random text, duplicate keys, a BOM). */
  | { kind: 'unclear' };

interface BodyCase {
  text: string | null;
  meaning: BodyMeaning;
}

/** Every UTF-16 unit as a \uXXXX escape: the same JSON string, spelled differently. */
function escapeAll(value: string): string {
  let out = '"';
  for (let i = 0; i < value.length; i++) out += `\\u${value.charCodeAt(i).toString(16).padStart(4, '0')}`;
  return `${out}"`;
}

function scopeBody(scope: string, spelling: 'compact' | 'pretty' | 'escaped'): string {
  if (spelling === 'pretty') return `\n  ${JSON.stringify({ scope }, null, 2)}\r\n\t`;
  if (spelling === 'escaped') return `{${escapeAll('scope')}:${escapeAll(scope)}}`;
  return JSON.stringify({ scope });
}

const spelling = fc.constantFrom('compact', 'compact', 'pretty', 'escaped') as fc.Arbitrary<
  'compact' | 'pretty' | 'escaped'
>;
const scoped = (scope: fc.Arbitrary<string>) =>
  fc
    .tuple(scope, spelling)
    .map(([s, how]): BodyCase => ({ text: scopeBody(s, how), meaning: { kind: 'scope', scope: s } }));
const invalid = (text: string): BodyCase => ({ text, meaning: { kind: 'invalid' } });
const unclear = (text: string): BodyCase => ({ text, meaning: { kind: 'unclear' } });

const foreignBodyKey = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '__proto__',
      'constructor',
      'prototype',
      'Scope',
      'SCOPE',
      'scope ',
      ' scope',
      'scopes',
      'client',
      'grant_type',
      'client_secret',
      'toString',
      'hasOwnProperty',
      '',
      '\u0000',
    ),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }).filter((key) => key !== 'scope') },
);

const extraFieldBody = fc
  .record({
    scope: fc.option(fc.oneof(scopeList, nonStringJson), { nil: undefined }),
    extras: fc.uniqueArray(fc.tuple(foreignBodyKey, jsonJunk), {
      minLength: 1,
      maxLength: 3,
      selector: ([key]) => key,
    }),
    scopeFirst: fc.boolean(),
  })
  .map(({ scope, extras, scopeFirst }) => {
    const entries = extras.map(([key, value]) => `${JSON.stringify(key)}:${JSON.stringify(value)}`);
    if (scope !== undefined) {
      const entry = `"scope":${JSON.stringify(scope)}`;
      if (scopeFirst) entries.unshift(entry);
      else entries.push(entry);
    }
    return invalid(`{${entries.join(',')}}`);
  });

const pollutingBodies = fc.constantFrom(
  `{"__proto__":{"scope":"${write}"}}`,
  `{"__proto__":{"polluted":"yes"},"scope":"${read}"}`,
  `{"scope":"${read}","__proto__":{"polluted":"yes"}}`,
  '{"constructor":{"prototype":{"polluted":"yes"}}}',
  `{"scope":"${read}","constructor":{"prototype":{"polluted":"yes"}}}`,
  '{"prototype":{"polluted":"yes"}}',
  `{"scope":"${read}","__proto__":null}`,
  '{"__proto__":[]}',
  '{"scope":{"__proto__":{"polluted":"yes"}}}',
  '{"scope":{"constructor":{"prototype":{"polluted":"yes"}}}}',
  '[{"__proto__":{"polluted":"yes"}}]',
);

const notJson = fc.constantFrom(
  '{not json',
  `scope=${read}`,
  `grant_type=client_credentials&scope=${encodeURIComponent(read)}`,
  `{"scope":"${read}"`,
  `{'scope':'${read}'}`,
  `{scope:"${read}"}`,
  `{"scope":"${read}",}`,
  `{"scope":"${read}"}}`,
  `{"scope":"${read}"} x`,
  `{"scope":"${read}"}\u0000`,
  `//c\n{"scope":"${read}"}`,
  'NaN',
  'undefined',
  'Infinity',
  `<scope>${read}</scope>`,
  '\u0000',
  ' ',
  '\n',
  '{"scope":"\\ud800',
  '{"scope":"\\x41"}',
  '{"scope":\'a\'}',
);

const nonObjectJson = fc.oneof(
  fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 5 }).map((value) => JSON.stringify(value)),
  fc.oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.string({ maxLength: 20 })).map((v) => JSON.stringify(v)),
  fc.constantFrom(`[{"scope":"${read}"}]`, `["${read}"]`, `"${read}"`, '1e309', '-0', '"\\u0000"', 'null'),
);

const deeplyNested = fc.oneof(
  fc.integer({ min: 1, max: 2_000 }).map((depth) => '['.repeat(depth) + ']'.repeat(depth)),
  fc.integer({ min: 1, max: 600 }).map((depth) => `${'{"a":'.repeat(depth)}0${'}'.repeat(depth)}`),
  fc.integer({ min: 1, max: 1_000 }).map((depth) => `{"scope":${'['.repeat(depth)}${']'.repeat(depth)}}`),
  fc
    .integer({ min: 1, max: 500 })
    .map((depth) => `{"scope":${'{"scope":'.repeat(depth)}"${read}"${'}'.repeat(depth)}}`),
);

const hugeBody = fc.oneof(
  fc.integer({ min: maxBodyBytes + 1, max: 1_000_000 }).map((size) => invalid('x'.repeat(size))),
  fc.integer({ min: 5_000, max: 200_000 }).map((depth) => invalid('['.repeat(depth))),
  fc.integer({ min: maxBodyBytes, max: 20_000 }).map((size) => invalid(`${' '.repeat(size)}{}`)),
  fc.integer({ min: 1_000, max: 20_000 }).map((size): BodyCase => {
    const scope = read + ' '.repeat(size);
    return { text: JSON.stringify({ scope }), meaning: { kind: 'scope', scope } };
  }),
);

/** Around the 4,096-byte limit: valid requests padded with whitespace, and multi-byte characters. */
const bodyAtTheLimit = fc.oneof(
  fc.integer({ min: 4_040, max: 4_100 }).map((pad): BodyCase => {
    return { text: `{"scope":"${read}"}${' '.repeat(pad)}`, meaning: { kind: 'scope', scope: read } };
  }),
  fc
    .tuple(fc.integer({ min: 2_000, max: 2_100 }), fc.constantFrom('\u00e9', '\u20ac', '\u{1f600}'))
    .map(([count, character]): BodyCase => {
      const scope = character.repeat(character.length === 2 ? Math.floor(count / 2) : count);
      return { text: JSON.stringify({ scope }), meaning: { kind: 'scope', scope } };
    }),
);

const bodyCase: fc.Arbitrary<BodyCase> = fc.oneof(
  { weight: 6, arbitrary: scoped(scopeString) },
  {
    weight: 1,
    arbitrary: fc.constantFrom<BodyCase>(
      { text: null, meaning: { kind: 'default' } },
      { text: '', meaning: { kind: 'default' } },
      { text: '{}', meaning: { kind: 'default' } },
      { text: ' {\n} ', meaning: { kind: 'default' } },
    ),
  },
  { weight: 2, arbitrary: extraFieldBody },
  { weight: 1, arbitrary: pollutingBodies.map(invalid) },
  { weight: 1, arbitrary: nonStringJson.map((scope) => invalid(JSON.stringify({ scope }))) },
  { weight: 1, arbitrary: nonObjectJson.map(invalid) },
  { weight: 1, arbitrary: notJson.map(invalid) },
  { weight: 1, arbitrary: deeplyNested.map(invalid) },
  { weight: 1, arbitrary: hugeBody },
  { weight: 1, arbitrary: bodyAtTheLimit },
  {
    weight: 1,
    arbitrary: fc.oneof(
      fc.string({ unit: 'binary', maxLength: 200 }).map(unclear),
      fc.json({ maxDepth: 3 }).map(unclear),
      fc
        .tuple(scopeList, scopeList)
        .map(([a, b]) => unclear(`{"scope":${JSON.stringify(a)},"scope":${JSON.stringify(b)}}`)),
      scopeList.map((scope) => unclear(`\ufeff${JSON.stringify({ scope })}`)),
    ),
  },
);

type ContentTypeVerdict = 'absent' | 'ok' | 'bad' | 'unclear';
interface ContentTypeCase {
  headers: Record<string, string> | null;
  verdict: ContentTypeVerdict;
}

const contentTypeName = fc.constantFrom('content-type', 'Content-Type', 'CONTENT-TYPE', 'Content-type');
const okContentType = fc.constantFrom(
  'application/json',
  'application/json; charset=utf-8',
  'APPLICATION/JSON',
  'Application/Json;charset=UTF-8',
  'application/json ; charset=utf-8',
);
const badContentType = fc.constantFrom(
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/xml',
  'text/json',
  'application/jsonp',
  'application/json5',
  'application/json-patch+json',
  'application/x-json',
  'json',
  'application/',
  'application/json, text/plain',
  '*/*',
  'text/html; charset=application/json',
);
const noise = fc.constantFrom<Record<string, string>>(
  {},
  {},
  { accept: '*/*' },
  { 'user-agent': 'curl/8', 'x-forwarded-for': '10.0.0.1, 127.0.0.1' },
  { 'x-amz-date': '20240101T000000Z', host: 'example.execute-api.us-east-1.amazonaws.com' },
);
const withHeader = (name: string, value: string, extra: Record<string, string>) => ({ ...extra, [name]: value });

const contentTypeCase: fc.Arbitrary<ContentTypeCase> = fc.oneof(
  { weight: 1, arbitrary: fc.constantFrom<ContentTypeCase>({ headers: null, verdict: 'absent' }) },
  { weight: 1, arbitrary: noise.map((headers): ContentTypeCase => ({ headers, verdict: 'absent' })) },
  {
    weight: 5,
    arbitrary: fc
      .tuple(contentTypeName, okContentType, noise)
      .map(([name, value, extra]): ContentTypeCase => ({ headers: withHeader(name, value, extra), verdict: 'ok' })),
  },
  {
    weight: 2,
    arbitrary: fc
      .tuple(contentTypeName, badContentType, noise)
      .map(([name, value, extra]): ContentTypeCase => ({ headers: withHeader(name, value, extra), verdict: 'bad' })),
  },
  {
    weight: 1,
    arbitrary: fc.oneof(
      fc
        .tuple(
          contentTypeName,
          fc.oneof(
            fc.constantFrom(
              '',
              ' application/json',
              'application/json\t',
              'application/vnd.api+json',
              'application/problem+json',
              'application/json\u0000',
            ),
            fc.string({ maxLength: 30 }),
          ),
        )
        .map(([name, value]): ContentTypeCase => ({ headers: { [name]: value }, verdict: 'unclear' })),
      fc.tuple(okContentType, badContentType, fc.boolean()).map(([ok, bad, okFirst]): ContentTypeCase => {
        const headers = okFirst
          ? { 'content-type': ok, 'Content-Type': bad }
          : { 'content-type': bad, 'Content-Type': ok };
        return { headers, verdict: 'unclear' };
      }),
    ),
  },
);

/** `flag-only`: isBase64Encoded is true but the body was not encoded. */
type Encoding = 'plain' | 'base64' | 'flag-only';
const encoding = fc.constantFrom<Encoding>('plain', 'plain', 'plain', 'base64', 'base64', 'flag-only');

// ---------------------------------------------------------------------------------------------------------
// Generators: HTTP envelope (paths, methods, callers)
// ---------------------------------------------------------------------------------------------------------

const percentEncoded = (value: string, mask: readonly boolean[] = []) =>
  [...value]
    .map((character, index) =>
      mask[index] === false
        ? character
        : [...Buffer.from(character)].map((byte) => `%${byte.toString(16).padStart(2, '0')}`).join(''),
    )
    .join('');

const trickSegments = [
  '..',
  '.',
  '%2e%2e',
  '%2E%2E',
  '%2e',
  '.%2e',
  'bwell%2F..%2Fbasic',
  '..%2Fbwell',
  '..%2F..%2Fbwell',
  'bwell%2F',
  '%2Fbwell',
  'bwell%2f..',
  'bwell%00',
  '%00',
  '%00bwell',
  '%',
  '%%',
  '%zz',
  'bwell%',
  '%E0%A4%A',
  '%C0%AE%C0%AE',
  '%C0%AF',
  '%FF',
  'bwell%20',
  '%20bwell',
  'bwell+',
  'BWELL',
  'Bwell',
  'bw%C3%A9ll',
  '%EF%BD%82%EF%BD%97%EF%BD%85%EF%BD%8C%EF%BD%8C',
  'bwel%CC%81l',
  'bwell%E2%80%8B',
  '__proto__',
  '%5F%5Fproto%5F%5F',
  'constructor',
  'prototype',
  'hasOwnProperty',
  'toString',
  'valueOf',
  '__defineGetter__',
  'bwell_admin',
  'bwell%23system%2F*.read',
  'bwell%3Fscope%3Dx',
  'bwell;basic',
  'bwell,basic',
  'bwell%0Abasic',
  '*',
  '%2A',
  '{client}',
  '%7Bclient%7D',
  '$LATEST',
  'token',
  'clients',
];

const clientSegment = fc.oneof(
  { weight: 4, arbitrary: servedName.map((name) => name as string) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(servedName, fc.array(fc.boolean(), { minLength: 10, maxLength: 10 }))
      .map(([name, mask]) => percentEncoded(name, mask)),
  },
  { weight: 4, arbitrary: fc.constantFrom(...trickSegments) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 30 }).map(encodeURIComponent) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1_000, max: 20_000 }).map((length) => 'a'.repeat(length)) },
  { weight: 1, arbitrary: fc.constant('') },
);

const pathTemplates: readonly ((client: string) => string)[] = [
  (c) => `/clients/${c}/token/`,
  (c) => `/clients/${c}/token/extra`,
  (c) => `/clients/${c}`,
  (c) => `/clients/${c}/`,
  (c) => `/clients/${c}/../basic/token`,
  (c) => `/clients/../clients/${c}/token`,
  (c) => `//clients/${c}/token`,
  (c) => `/clients//${c}/token`,
  (c) => `/Clients/${c}/token`,
  (c) => `/clients/${c}/TOKEN`,
  (c) => `/clients/${c}/token?scope=x`,
  (c) => `/clients/${c}/token#x`,
  (c) => `/clients/${c}/token%00`,
  (c) => `/clients/${c}%2Ftoken`,
  (c) => `clients/${c}/token`,
  (c) => `/clients/${c}/token/..`,
  (c) => `/v1/clients/${c}/token`,
  (c) => `/clients/${c}/token;jsessionid=1`,
  (c) => `/clients/${c}/token\n`,
  () => '/',
  () => '',
  () => '/clients//token',
  () => '/clients/{client}/token',
];

const requestPath = fc.oneof(
  { weight: 5, arbitrary: clientSegment.map((segment) => `/clients/${segment}/token`) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(servedName, fc.nat({ max: pathTemplates.length - 1 }))
      .map(([name, index]) => (pathTemplates[index] as (client: string) => string)(name)),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 60 }) },
);

const httpMethod = fc.oneof(
  { weight: 6, arbitrary: fc.constant('POST') },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      'GET',
      'PUT',
      'PATCH',
      'HEAD',
      'OPTIONS',
      'DELETE',
      'post',
      'Post',
      'POST ',
      ' POST',
      'CONNECT',
      'TRACE',
      '',
    ),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 10 }) },
);

/** `no-identity`: requestContext.identity is missing altogether. */
type Caller = string | null | { kind: 'no-identity' };
const caller: fc.Arbitrary<Caller> = fc.oneof(
  { weight: 6, arbitrary: fc.constant(callerArn) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.stringMatching(/^\d{12}$/), fc.string({ minLength: 1, maxLength: 20 }))
      .map(([account, role]) => `arn:aws:iam::${account}:role/${role}`),
  },
  { weight: 1, arbitrary: fc.string({ minLength: 1, maxLength: 30 }) },
  { weight: 2, arbitrary: fc.constantFrom<Caller>(null, '', { kind: 'no-identity' }) },
);

/** Event fields API Gateway would never send so, for defence in depth. */
type Tamper =
  | 'none'
  | 'pathParameters-null'
  | 'client-empty'
  | 'pathParameters-empty'
  | 'client-not-string'
  | 'resource-other';
const tamper = fc.oneof(
  { weight: 12, arbitrary: fc.constant<Tamper>('none') },
  {
    weight: 1,
    arbitrary: fc.constantFrom<Tamper>(
      'pathParameters-null',
      'client-empty',
      'pathParameters-empty',
      'client-not-string',
      'resource-other',
    ),
  },
);

interface HttpCase {
  path: string;
  method: string;
  caller: Caller;
  body: BodyCase;
  contentType: ContentTypeCase;
  encoding: Encoding;
  tamper: Tamper;
}

function httpEventOf(input: HttpCase): APIGatewayProxyEvent {
  const callerArnValue = typeof input.caller === 'object' && input.caller !== null ? callerArn : input.caller;
  const text = input.body.text;
  const body = text !== null && input.encoding === 'base64' ? Buffer.from(text, 'utf8').toString('base64') : text;
  const event = apiGatewayEvent({
    method: input.method,
    path: input.path,
    headers: input.contentType.headers ?? {},
    body,
    callerArn: callerArnValue,
  });
  const loose = event as unknown as Record<string, unknown> & { requestContext: Record<string, unknown> };
  if (input.contentType.headers === null) loose.headers = null;
  event.isBase64Encoded = input.encoding !== 'plain';
  if (typeof input.caller === 'object' && input.caller !== null) delete loose.requestContext.identity;
  switch (input.tamper) {
    case 'pathParameters-null':
      loose.pathParameters = null;
      break;
    case 'client-empty':
      loose.pathParameters = { client: '' };
      break;
    case 'pathParameters-empty':
      loose.pathParameters = {};
      break;
    case 'client-not-string':
      loose.pathParameters = { client: ['bwell'] };
      break;
    case 'resource-other':
      loose.resource = '/clients/{client}';
      break;
  }
  return event;
}

/** The oracle for an HTTP event: reads the event the way API Gateway shaped it, the body the way it was built. */
function expectHttp(event: APIGatewayProxyEvent, input: HttpCase): Expectation {
  const verdict = new Verdict();
  if (event.resource !== tokenRoute) verdict.fail('not_found');
  const method = event.httpMethod;
  if (method !== 'POST' && method !== 'DELETE') verdict.fail('method_not_allowed');
  if (!event.requestContext?.identity?.userArn) verdict.fail('access_denied');
  const client: unknown = event.pathParameters?.client;
  let known: string | undefined;
  // A path parameter not shaped like a client name is refused before anything looks it up (or repeats it).
  if (typeof client !== 'string' || !clientNamePattern.test(client)) verdict.fail('invalid_request');
  else if (!isRegistered(client)) verdict.fail('unknown_client');
  else known = client;

  // DELETE invalidates a client's tokens: a valid one is not hostile input, and would empty the cache.
  if (method === 'DELETE') {
    fc.pre(!(verdict.clean && known !== undefined));
    return verdict.finish(undefined);
  }

  let requested: string | undefined;
  let requestedKnown = true;
  const { text, meaning } = input.body;
  if (text !== null && text !== '') {
    const contentType = input.contentType.verdict;
    if (contentType === 'bad') {
      verdict.fail('invalid_request');
      requestedKnown = false;
    } else {
      if (contentType === 'unclear') verdict.maybe('invalid_request');
      if (input.encoding === 'flag-only') {
        verdict.maybe('invalid_request', 'invalid_scope');
        requestedKnown = false;
      } else if (Buffer.byteLength(text, 'utf8') > maxBodyBytes) {
        verdict.fail('invalid_request');
        requestedKnown = false;
      } else if (meaning.kind === 'scope') {
        requested = meaning.scope;
      } else if (meaning.kind === 'invalid') {
        verdict.fail('invalid_request');
        requestedKnown = false;
      } else if (meaning.kind === 'unclear') {
        verdict.maybe('invalid_request', 'invalid_scope');
        requestedKnown = false;
      }
    }
  }

  if (known === undefined) return verdict.finish(undefined);
  // The harness's failing fixtures (revoked, missing, stalled) answer 5xx by design: not hostile input.
  fc.pre(!(verdict.passable && !isServed(known)));
  if (!requestedKnown) return verdict.finish(undefined);
  const scopes = resolveExpectedScope(known, requested);
  if (scopes === undefined) verdict.fail('invalid_scope');
  return verdict.finish(scopes === undefined ? undefined : { client: known, scopes });
}

// ---------------------------------------------------------------------------------------------------------
// Generators: direct invocations
// ---------------------------------------------------------------------------------------------------------

const clientNameTricks = fc.constantFrom(
  '..',
  '.',
  '../bwell',
  'bwell/..',
  'bwell/../basic',
  '/bwell',
  'bwell/',
  'BWELL',
  'Bwell',
  ' bwell',
  'bwell ',
  'bwell\u0000',
  '\u0000',
  'bwell\n',
  'bw\u00e9ll',
  '\uff42\uff57\uff45\uff4c\uff4c',
  'bwel\u0301l',
  'bwell\u200b',
  '__proto__',
  'constructor',
  'prototype',
  'hasOwnProperty',
  'toString',
  'bwell_admin',
  'bwell#system/*.read',
  'bwell:basic',
  '$LATEST',
  '1',
  '*',
  '%62well',
  'bwell%00',
  'a'.repeat(10_000),
);

const invokeClient = fc.oneof(
  { weight: 5, arbitrary: servedName.map((name): unknown => name) },
  { weight: 3, arbitrary: clientNameTricks },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 20 }) },
  { weight: 1, arbitrary: nonStringJson },
  { weight: 1, arbitrary: fc.constant(undefined) },
);

const invokeAction = fc.oneof(
  { weight: 8, arbitrary: fc.constant<unknown>(undefined) },
  { weight: 2, arbitrary: fc.constant('invalidate') },
  { weight: 1, arbitrary: fc.constantFrom('INVALIDATE', 'invalidate ', 'token', 'revoke', '', 'delete') },
  { weight: 1, arbitrary: nonStringJson },
);

const invokeScope = fc.oneof(
  { weight: 3, arbitrary: fc.constant<unknown>(undefined) },
  { weight: 5, arbitrary: scopeString },
  { weight: 1, arbitrary: nonStringJson },
);

const foreignEventKey = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '__proto__',
      'constructor',
      'prototype',
      'Client',
      'SCOPE',
      'scopes',
      'client ',
      'alias',
      'admin',
      'httpMethod',
      'body',
      'toString',
      'hasOwnProperty',
      '',
    ),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
);

/** How the invocation is qualified: through the alias named after the event's client, its admin alias, or another. */
type QualifierChoice = { kind: 'client' } | { kind: 'admin' } | { kind: 'fixed'; qualifier: string | undefined };
const qualifierChoice: fc.Arbitrary<QualifierChoice> = fc.oneof(
  { weight: 5, arbitrary: fc.constant<QualifierChoice>({ kind: 'client' }) },
  { weight: 1, arbitrary: fc.constant<QualifierChoice>({ kind: 'admin' }) },
  {
    weight: 3,
    arbitrary: fc
      .oneof(
        servedName.map((name): string | undefined => name),
        servedName.map((name) => `${name}_admin`),
        fc.constantFrom(undefined, '$LATEST', 'BWELL', 'bwell ', 'nobody', '', '__proto__'),
        fc.nat().map(String),
        fc.string({ minLength: 1, maxLength: 20 }),
      )
      .map((qualifier): QualifierChoice => ({ kind: 'fixed', qualifier })),
  },
);

interface StructuredInvoke {
  client: unknown;
  scope: unknown;
  action: unknown;
  extras: [string, unknown][];
  rotate: number;
  qualifier: QualifierChoice;
}

const structuredInvoke = fc.record<StructuredInvoke>({
  client: invokeClient,
  scope: invokeScope,
  action: invokeAction,
  extras: fc.oneof(
    { weight: 7, arbitrary: fc.constant<[string, unknown][]>([]) },
    {
      weight: 2,
      arbitrary: fc.uniqueArray(
        fc.tuple(
          foreignEventKey.filter((key) => !['client', 'scope', 'action'].includes(key)),
          jsonJunk as fc.Arbitrary<unknown>,
        ),
        { minLength: 1, maxLength: 3, selector: ([key]) => key },
      ),
    },
  ),
  rotate: fc.nat(),
  qualifier: qualifierChoice,
});

/** The event as Lambda hands it over: parsed from JSON text, so `__proto__` is an own key. */
function invokeEventOf(input: StructuredInvoke): unknown {
  const entries: string[] = [];
  for (const [key, value] of [
    ['client', input.client],
    ['scope', input.scope],
    ['action', input.action],
    ...input.extras,
  ] as [string, unknown][]) {
    if (value !== undefined) entries.push(`${JSON.stringify(key)}:${JSON.stringify(value)}`);
  }
  const at = entries.length === 0 ? 0 : input.rotate % entries.length;
  return JSON.parse(`{${[...entries.slice(at), ...entries.slice(0, at)].join(',')}}`);
}

function qualifierOf(input: StructuredInvoke): string | undefined {
  const name = typeof input.client === 'string' ? input.client : 'bwell';
  if (input.qualifier.kind === 'client') return name;
  if (input.qualifier.kind === 'admin') return `${name}_admin`;
  return input.qualifier.qualifier;
}

/** The alias Lambda reports in the invoked ARN (arn:aws:lambda:region:account:function:name[:qualifier]). */
function aliasIn(qualifier: string | undefined): string | undefined {
  if (qualifier === undefined) return undefined;
  const field = `${functionArn}:${qualifier}`.split(':')[7];
  if (field === undefined || field === '$LATEST' || /^\d+$/.test(field)) return undefined;
  return field;
}

/** The direct-invoke contract: `{client, scope?}` through the client's alias, `{action, client}` through its admin alias. */
function expectInvoke(input: StructuredInvoke, qualifier: string | undefined): Expectation {
  const verdict = new Verdict();
  const alias = aliasIn(qualifier);
  const { client, scope, action } = input;
  const keys = [
    ...(client === undefined ? [] : ['client']),
    ...(scope === undefined ? [] : ['scope']),
    ...(action === undefined ? [] : ['action']),
    ...input.extras.map(([key]) => key),
  ];
  const allowed = action === undefined ? ['client', 'scope'] : ['action', 'client'];
  if (keys.some((key) => !allowed.includes(key))) verdict.fail('invalid_request');
  if (action !== undefined && action !== 'invalidate') verdict.fail('invalid_request');
  const named = typeof client === 'string' && clientNamePattern.test(client) ? client : undefined;
  if (named === undefined) verdict.fail('invalid_request');

  if (action === 'invalidate') {
    if (alias === undefined || alias !== `${named}_admin`) verdict.fail('access_denied');
    else if (named !== undefined && !isRegistered(named)) verdict.fail('unknown_client');
    // A valid invalidation is not hostile input, and would empty the cache.
    fc.pre(!verdict.clean);
    return verdict.finish(undefined);
  }
  if (scope !== undefined && typeof scope !== 'string') verdict.fail('invalid_request');
  if (alias === undefined || alias !== named) verdict.fail('access_denied');
  else if (named !== undefined && !isRegistered(named)) verdict.fail('unknown_client');
  if (named === undefined || !isRegistered(named)) return verdict.finish(undefined);
  fc.pre(!(verdict.passable && !isServed(named)));
  if (scope !== undefined && typeof scope !== 'string') return verdict.finish(undefined);
  const scopes = resolveExpectedScope(named, scope as string | undefined);
  if (scopes === undefined) verdict.fail('invalid_scope');
  return verdict.finish(scopes === undefined ? undefined : { client: named, scopes });
}

const nonObjectEvent = fc.oneof(
  fc.constant<unknown>(null),
  fc.integer(),
  fc.boolean(),
  fc.string({ maxLength: 30 }),
  fc.constantFrom(`{"client":"bwell","scope":"${read}"}`, 'bwell', ''),
  fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 4 }),
  fc.constant([{ client: 'bwell' }]),
  fc.constant(['bwell', read]),
);

type InvokeCase =
  | { kind: 'structured'; input: StructuredInvoke }
  | { kind: 'non-object'; event: unknown; qualifier: string | undefined }
  | { kind: 'random'; event: unknown; qualifier: string | undefined };

const someQualifier = fc.oneof(
  servedName.map((name): string | undefined => name),
  fc.constant(undefined),
);

const invokeCase: fc.Arbitrary<InvokeCase> = fc.oneof(
  { weight: 8, arbitrary: structuredInvoke.map((input): InvokeCase => ({ kind: 'structured', input })) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(nonObjectEvent, someQualifier)
      .map(([event, qualifier]): InvokeCase => ({ kind: 'non-object', event, qualifier })),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.jsonValue({ maxDepth: 3 }), someQualifier)
      .map(([event, qualifier]): InvokeCase => ({ kind: 'random', event, qualifier })),
  },
);

// ---------------------------------------------------------------------------------------------------------
// Checking answers
// ---------------------------------------------------------------------------------------------------------

const tokenFields = ['access_token', 'expires_in', 'scope', 'token_type'];
const errorFields = ['error', 'error_description'];

/** For assertion messages: never a token. */
function redacted(value: unknown): string {
  let text = JSON.stringify(value, (key, inner) => (key === 'access_token' ? '<redacted>' : inner)) ?? String(value);
  // Tokens also travel inside JSON-in-a-string (an HTTP answer's body).
  for (const token of tokensSeen) text = text.replaceAll(token, '<redacted>');
  return text.length > 600 ? `${text.slice(0, 600)}…` : text;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Remembers every token an answer carries, whatever its shape, for the log-leak check. */
function collectTokens(answer: unknown): void {
  if (!isRecord(answer)) return;
  if (typeof answer.access_token === 'string' && answer.access_token !== '') tokensSeen.add(answer.access_token);
  if (typeof answer.body === 'string') {
    try {
      collectTokens(JSON.parse(answer.body));
    } catch {
      // not JSON: carries no token
    }
  }
}

function assertScopeMatches(actual: string[], expectation: Expectation, context: string): void {
  if (expectation.kind === 'token') {
    assert.deepEqual(actual, expectation.scopes, `${context}: the token's scope is the requested set`);
  }
}

/** A served token: the exact fields, and a scope the client is allowed. */
function assertToken(json: unknown, client: unknown, context: string): string[] {
  assert.ok(isRecord(json), `${context}: the answer is an object`);
  assert.deepEqual(Object.keys(json).sort(), tokenFields, `${context}: a token answer has exactly ${tokenFields}`);
  assert.equal(json.token_type, 'Bearer', context);
  assert.ok(typeof json.access_token === 'string' && json.access_token !== '', `${context}: access_token`);
  assert.ok(typeof json.expires_in === 'number' && json.expires_in > 0, `${context}: expires_in`);
  assert.equal(typeof json.scope, 'string', `${context}: scope`);
  assert.ok(
    typeof client === 'string' && isServed(client),
    `${context}: a token was served for client ${redacted(client)}, which is not a working client`,
  );
  const allowed = (registry[client] as ClientConfig).scopes;
  const granted = scopeSet(json.scope as string);
  const notAllowed = granted.filter((scope) => !allowed.includes(scope));
  assert.deepEqual(notAllowed, [], `${context}: token carries scopes client ${client} is not allowed`);
  return granted;
}

function assertCode(code: unknown, codes: Codes, context: string): void {
  if (codes !== 'any') {
    assert.ok(codes.has(code as ErrorCode), `${context}: refused with ${String(code)}, expected one of ${[...codes]}`);
  }
}

interface Tally {
  served: number;
  refused: Map<string, number>;
}
const newTally = (): Tally => ({ served: 0, refused: new Map() });
const countRefusal = (tally: Tally, code: string) => tally.refused.set(code, (tally.refused.get(code) ?? 0) + 1);
const describeTally = (tally: Tally) =>
  `${tally.served} served, refused: ${[...tally.refused].map(([code, n]) => `${code} ${n}`).join(', ')}`;

async function checkHttp(event: APIGatewayProxyEvent, expectation: Expectation, tally: Tally): Promise<void> {
  // The handler must answer, not throw: a rejection fails the property as it is.
  const result = (await harness.invoke(event, apiGatewayAliasName)) as APIGatewayProxyResult;
  collectTokens(result);
  assert.ok(isRecord(result), 'the HTTP answer is an object');
  const context = `HTTP ${result.statusCode} ${redacted(result.body)} (expected ${redacted(expectation)})`;
  assert.equal(typeof result.body, 'string', context);
  assert.equal(result.headers?.['Content-Type'], 'application/json', context);
  assert.equal(result.headers?.['Cache-Control'], 'no-store', context);
  const json = JSON.parse(result.body) as Record<string, unknown>;
  if (result.statusCode === 200) {
    const granted = assertToken(json, event.pathParameters?.client, context);
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

async function checkInvoke(event: unknown, qualifier: string | undefined, expectation: Expectation, tally: Tally) {
  let answer: unknown;
  let thrown: unknown;
  let threw = false;
  try {
    answer = await harness.invoke(event, qualifier);
  } catch (error) {
    thrown = error;
    threw = true;
  }
  collectTokens(answer);
  const context = `invoke via ${redacted(qualifier)}: ${threw ? `threw ${redacted(String(thrown))}` : `returned ${redacted(answer)}`} (expected ${redacted(expectation)})`;
  if (!threw) {
    // Served through an alias: the token is the alias's client's.
    const granted = assertToken(answer, aliasIn(qualifier), context);
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

function prototypeSnapshot(): Map<string, PropertyDescriptorMap> {
  const prototypes: [string, object][] = [
    ['Object.prototype', Object.prototype],
    ['Array.prototype', Array.prototype],
    ['Function.prototype', Function.prototype],
    ['String.prototype', String.prototype],
  ];
  return new Map(prototypes.map(([name, proto]) => [name, Object.getOwnPropertyDescriptors(proto)]));
}

function assertUpstreamBounded(): void {
  const bound = distinctScopeSets();
  assert.ok(
    harness.oidc.tokenRequests() <= bound,
    `the token endpoint saw ${harness.oidc.tokenRequests()} requests; valid requests fill at most ${bound} keys`,
  );
}

/**
 * After a property run: the tally goes into the test report, the run must have generated both kinds of case
 * (`bothKinds` names them), and the token endpoint must not have seen more calls than valid requests allow.
 */
function concludeRun(t: TestContext, tally: Tally, bothKinds: string): void {
  t.diagnostic(describeTally(tally));
  assert.ok(tally.served > 0 && tally.refused.size > 0, `${bothKinds} were both generated`);
  assertUpstreamBounded();
}

// ---------------------------------------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------------------------------------

describe('hostile input (issue #4), property-based', () => {
  before(async () => {
    harness = await startBrokerHarness();
    registry = JSON.parse(process.env[environmentVariables.clients] ?? '{}') as Record<string, ClientConfig>;
    prototypesBefore = prototypeSnapshot();
  });
  after(async () => {
    await harness?.close();
  });

  it('answers any HTTP body — odd, huge, non-JSON, nested, polluting, base64 — with a 4xx or an allowed token', async (t) => {
    const tally = newTally();
    await fc.assert(
      fc.asyncProperty(
        fc.record({ client: servedName, body: bodyCase, contentType: contentTypeCase, encoding }),
        async ({ client, ...rest }) => {
          const input: HttpCase = {
            path: `/clients/${client}/token`,
            method: 'POST',
            caller: callerArn,
            tamper: 'none',
            ...rest,
          };
          const event = httpEventOf(input);
          await checkHttp(event, expectHttp(event, input), tally);
        },
      ),
      { numRuns, includeErrorInReport: true },
    );
    concludeRun(t, tally, 'valid and hostile requests');
  });

  it('answers HTTP path tricks, wrong methods, missing callers and content types with a 4xx or an allowed token', async (t) => {
    const tally = newTally();
    const body = fc.oneof(
      {
        weight: 3,
        arbitrary: fc.oneof(scoped(scopeList), fc.constant<BodyCase>({ text: null, meaning: { kind: 'default' } })),
      },
      { weight: 1, arbitrary: bodyCase },
    );
    const contentType = fc.oneof(
      {
        weight: 3,
        arbitrary: fc.constant<ContentTypeCase>({ headers: { 'content-type': 'application/json' }, verdict: 'ok' }),
      },
      { weight: 1, arbitrary: contentTypeCase },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.record({ path: requestPath, method: httpMethod, caller, body, contentType, encoding, tamper }),
        async (input) => {
          const event = httpEventOf(input);
          await checkHttp(event, expectHttp(event, input), tally);
        },
      ),
      { numRuns, includeErrorInReport: true },
    );
    concludeRun(t, tally, 'valid and hostile requests');
  });

  it('answers any direct invocation with a token of its alias’s client or throws an error named by a 4xx code', async (t) => {
    const tally = newTally();
    await fc.assert(
      fc.asyncProperty(invokeCase, async (input) => {
        if (input.kind === 'structured') {
          const qualifier = qualifierOf(input.input);
          const expectation = expectInvoke(input.input, qualifier);
          await checkInvoke(invokeEventOf(input.input), qualifier, expectation, tally);
        } else {
          // An unqualified invocation is refused before its event is read.
          const notAnObject: ErrorCode = input.qualifier === undefined ? 'access_denied' : 'invalid_request';
          const expectation: Expectation =
            input.kind === 'non-object'
              ? { kind: 'refused', codes: new Set<ErrorCode>([notAnObject]) }
              : { kind: 'either', codes: 'any' };
          await checkInvoke(input.event, input.qualifier, expectation, tally);
        }
      }),
      { numRuns, includeErrorInReport: true },
    );
    concludeRun(t, tally, 'valid and hostile invocations');
  });

  it('never serves a scope the client is not allowed, over HTTP or direct invoke, and serves exactly the allowed set asked for', async (t) => {
    const tally = newTally();
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          client: servedName,
          scope: fc.option(scopeList, { nil: undefined }),
          channel: fc.constantFrom('http', 'invoke'),
          mask: fc.array(fc.boolean(), { minLength: 10, maxLength: 10 }),
          spelling,
          encoding: fc.constantFrom<Encoding>('plain', 'base64'),
        }),
        async ({ client, scope, channel, mask, spelling: how, encoding: enc }) => {
          const scopes = resolveExpectedScope(client, scope);
          const expectation: Expectation =
            scopes === undefined
              ? { kind: 'refused', codes: new Set<ErrorCode>(['invalid_scope']) }
              : { kind: 'token', client, scopes };
          if (channel === 'invoke') {
            await checkInvoke(scope === undefined ? { client } : { client, scope }, client, expectation, tally);
            return;
          }
          const input: HttpCase = {
            // Percent-encoding any of the name's characters names the same client.
            path: `/clients/${percentEncoded(
              client,
              mask.map((bit) => !bit),
            )}/token`,
            method: 'POST',
            caller: callerArn,
            body:
              scope === undefined
                ? { text: null, meaning: { kind: 'default' } }
                : { text: scopeBody(scope, how), meaning: { kind: 'scope', scope } },
            contentType: { headers: { 'Content-Type': 'application/json; charset=utf-8' }, verdict: 'ok' },
            encoding: enc,
            tamper: 'none',
          };
          await checkHttp(httpEventOf(input), expectation, tally);
        },
      ),
      { numRuns, includeErrorInReport: true },
    );
    concludeRun(t, tally, 'allowed and refused scope sets');
  });

  it('refuses a direct invocation through a client alias that is shaped like an API Gateway event', async () => {
    // IAM grants direct invocation per alias; API Gateway invokes the unqualified function. An event that
    // merely looks like API Gateway's must not turn a grant on one alias into any client's token.
    // Ordered so that the shrunk counterexample is the telling one: basic's alias, bwell's write scope.
    const forged = fc
      .record({
        client: fc.constantFrom('bwell', 'discovered', 'basic'),
        alias: fc.constantFrom('basic', 'nobody', 'bwell', 'bwell_admin', 'discovered', 'BWELL'),
        scope: fc.constantFrom(write, read, `${read} ${write}`, undefined),
        variant: fc.constantFrom('minimal', 'full', 'no-identity', 'number-body', 'junk-context'),
      })
      .filter(({ client, alias }) => client !== alias)
      .map(({ client, alias, scope, variant }) => {
        const full = apiGatewayEvent({
          method: 'POST',
          path: `/clients/${client}/token`,
          headers: { 'content-type': 'application/json' },
          body: scope === undefined ? null : JSON.stringify({ scope }),
          callerArn: 'arn:aws:iam::123456789012:role/forged',
        }) as unknown as Record<string, unknown>;
        const minimal = {
          httpMethod: 'POST',
          resource: tokenRoute,
          pathParameters: { client },
          requestContext: { identity: { userArn: 'x' } },
          body: full.body,
        };
        const events: Record<string, unknown> = {
          full,
          minimal,
          'no-identity': { ...minimal, requestContext: {} },
          'number-body': { ...minimal, body: 42 },
          'junk-context': { httpMethod: {}, requestContext: null },
        };
        return { event: JSON.parse(JSON.stringify(events[variant])) as unknown, alias, variant };
      });
    const tally = newTally();
    await fc.assert(
      fc.asyncProperty(forged, async ({ event, alias }) => {
        await checkInvoke(event, alias, { kind: 'refused', codes: 'any' }, tally);
      }),
      { numRuns: forgedRuns, includeErrorInReport: true },
    );
  });

  it('answers an API Gateway event with malformed fields (non-string body, junk headers, ids) with a 4xx or an allowed token', async (t) => {
    // API Gateway never sends these; a forged direct invocation can (see the property above). Defence in depth.
    const fields = [
      'body',
      'headers',
      'isBase64Encoded',
      'pathParameters',
      'resource',
      'httpMethod',
      'requestContext',
      'identity',
      'userArn',
      'requestId',
    ] as const;
    const junk = fc.oneof(nonStringJson, jsonJunk);
    const malformed = fc
      .record({
        client: servedName,
        scope: fc.option(fc.constantFrom(read, write), { nil: undefined }),
        corruptions: fc.uniqueArray(fc.tuple(fc.constantFrom(...fields), junk), {
          minLength: 1,
          maxLength: 3,
          selector: ([field]) => field,
        }),
      })
      .map(({ client, scope, corruptions }) => {
        const event = JSON.parse(
          JSON.stringify(
            apiGatewayEvent({
              method: 'POST',
              path: `/clients/${client}/token`,
              headers: { 'content-type': 'application/json' },
              body: scope === undefined ? null : JSON.stringify({ scope }),
              callerArn,
            }),
          ),
        ) as Record<string, unknown>;
        for (const [field, value] of corruptions) {
          const context = isRecord(event.requestContext) ? event.requestContext : undefined;
          if (field === 'identity') {
            if (context) context.identity = value;
          } else if (field === 'userArn' || field === 'requestId') {
            const holder = field === 'userArn' ? context?.identity : context;
            if (isRecord(holder)) holder[field] = value;
          } else event[field] = value;
        }
        return event as unknown as APIGatewayProxyEvent;
      });
    const tally = newTally();
    await fc.assert(
      fc.asyncProperty(malformed, async (event) => {
        await checkHttp(event, { kind: 'either', codes: 'any' }, tally);
      }),
      { numRuns: malformedRuns, includeErrorInReport: true },
    );
    t.diagnostic(describeTally(tally));
  });

  it('refuses a malformed or megabyte client name over HTTP POST, DELETE and direct invoke, and never repeats it', async () => {
    // Issue #10: the name was echoed into the audit line and into `no client named "..."`, whatever its size.
    const marker = `hostile${randomBytes(6).toString('hex')}`;
    const names = [
      marker.repeat(Math.ceil(1_000_000 / marker.length)),
      `bwell' <script>${marker}</script>`,
      `bwell\n{"level":"ERROR","message":"${marker}"}`,
      `BWELL-${marker}`,
      `${marker}_admin`,
      `bwell-${marker}`.padEnd(65, '0'),
    ];
    const shown = (text: string) => (text.length > 200 ? `${text.slice(0, 200)}…` : text);
    const logsBefore = harness.output.text().length;
    let refusals = 0;
    for (const name of names) {
      for (const method of ['POST', 'DELETE']) {
        const answer = await harness.http(name, { method });
        const context = `${method} ${shown(name)}: ${answer.statusCode} ${shown(answer.body)}`;
        assert.equal(answer.statusCode, 400, context);
        assert.deepEqual(Object.keys(answer.json).sort(), errorFields, context);
        assert.equal(answer.json.error, 'invalid_request', context);
        assert.ok(!String(answer.json.error_description).includes(marker), `${context}: the description repeats it`);
        refusals++;
      }
      const invocations: [Record<string, unknown>, string][] = [
        [{ client: name }, 'bwell'],
        [{ client: name, scope: read }, 'bwell'],
        [{ action: 'invalidate', client: name }, 'bwell_admin'],
      ];
      for (const [event, qualifier] of invocations) {
        const thrown = await harness.invoke(event, qualifier).then(
          () => undefined,
          (error: unknown) => error,
        );
        const context = `invoke ${shown(JSON.stringify(event))} via ${qualifier}: ${shown(String(thrown))}`;
        assert.ok(thrown instanceof Error, `${context}: refused`);
        assert.equal(thrown.name, 'invalid_request', context);
        assert.ok(!thrown.message.includes(marker), `${context}: the description repeats it`);
        refusals++;
      }
    }
    const logs = harness.output.text().slice(logsBefore);
    assert.equal(logs.split('token request refused').length - 1, refusals, 'every refusal was logged');
    assert.ok(
      !logs.includes(marker),
      `a log line repeats the client name: ${shown(logs.slice(logs.indexOf(marker) - 100))}`,
    );
  });

  it('leaves the prototypes unpolluted and logs no secret and no token', () => {
    assert.ok(prototypesBefore, 'the harness started');
    assert.deepEqual(prototypeSnapshot(), prototypesBefore, 'no prototype gained, lost or changed a property');
    const probe: Record<string, unknown> = {};
    for (const key of ['polluted', 'scope', 'client', 'admin', 'isAdmin']) {
      assert.equal(probe[key], undefined, `Object.prototype.${key} is not set`);
    }
    assertUpstreamBounded();
    const logs = harness.output.text();
    assert.ok(logs.includes('token request refused'), 'the refusals were logged');
    assertNoLeak(logs, [...harness.secrets(), ...tokensSeen]);
  });
});
