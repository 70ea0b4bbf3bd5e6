/**
 * Hostile input through the API Gateway entry point (issue #4), property-based: API Gateway events of any body,
 * content type, encoding, path, method and caller, and events with fields API Gateway never sends, through the
 * real handler as API Gateway invokes it. The oracle and the checks of an answer are test/support/hostile-input.ts's.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import fc from 'fast-check';
import { clientNamePattern } from '../../lambdas/core/config.js';
import type { ErrorCode } from '../../lambdas/core/errors.js';
import { tokenRoute } from '../../lambdas/entry/http.js';
import { apiGatewayEvent } from '../../lambdas/local/api-gateway-event.js';
import { callerArn } from '../support/broker-harness.js';
import {
  describeTally,
  type Expectation,
  errorFields,
  HostileInputBroker,
  hostileClientNames,
  isRecord,
  isServed,
  jsonJunk,
  newTally,
  nonStringJson,
  numRuns,
  read,
  scopeList,
  scopeString,
  servedName,
  shown,
  Verdict,
  write,
} from '../support/hostile-input.js';

/** Events no API Gateway would send, fewer than the properties' runs. */
const malformedRuns = 500;
const maxBodyBytes = 4096;

let broker: HostileInputBroker;

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
  else if (!broker.isRegistered(client)) verdict.fail('unknown_client');
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
  const scopes = broker.resolveExpectedScope(known, requested);
  if (scopes === undefined) verdict.fail('invalid_scope');
  return verdict.finish(scopes === undefined ? undefined : { client: known, scopes });
}

// ---------------------------------------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------------------------------------

describe('hostile input over HTTP (issue #4), property-based', () => {
  before(async () => {
    broker = await HostileInputBroker.start();
  });
  after(async () => {
    await broker?.close();
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
          await broker.checkHttp(event, expectHttp(event, input), tally);
        },
      ),
      { numRuns, includeErrorInReport: true },
    );
    broker.concludeRun(t, tally, 'valid and hostile requests');
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
          await broker.checkHttp(event, expectHttp(event, input), tally);
        },
      ),
      { numRuns, includeErrorInReport: true },
    );
    broker.concludeRun(t, tally, 'valid and hostile requests');
  });

  it('never serves a scope the client is not allowed over HTTP, and serves exactly the allowed set asked for', async (t) => {
    const tally = newTally();
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          client: servedName,
          scope: fc.option(scopeList, { nil: undefined }),
          mask: fc.array(fc.boolean(), { minLength: 10, maxLength: 10 }),
          spelling,
          encoding: fc.constantFrom<Encoding>('plain', 'base64'),
        }),
        async ({ client, scope, mask, spelling: how, encoding: enc }) => {
          const scopes = broker.resolveExpectedScope(client, scope);
          const expectation: Expectation =
            scopes === undefined
              ? { kind: 'refused', codes: new Set<ErrorCode>(['invalid_scope']) }
              : { kind: 'token', client, scopes };
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
          await broker.checkHttp(httpEventOf(input), expectation, tally);
        },
      ),
      { numRuns, includeErrorInReport: true },
    );
    broker.concludeRun(t, tally, 'allowed and refused scope sets');
  });

  it('answers an API Gateway event with malformed fields (non-string body, junk headers, ids) with a 4xx or an allowed token', async (t) => {
    // API Gateway never sends these; a forged direct invocation can (hostile-input-invoke.test.ts). Defence in depth.
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
        await broker.checkHttp(event, { kind: 'either', codes: 'any' }, tally);
      }),
      { numRuns: malformedRuns, includeErrorInReport: true },
    );
    t.diagnostic(describeTally(tally));
  });

  it('refuses a malformed or megabyte client name over HTTP POST and DELETE, and never repeats it', async () => {
    const { marker, names } = hostileClientNames();
    const logsBefore = broker.harness.output.text().length;
    let refusals = 0;
    for (const name of names) {
      for (const method of ['POST', 'DELETE']) {
        const answer = await broker.harness.http(name, { method });
        const context = `${method} ${shown(name)}: ${answer.statusCode} ${shown(answer.body)}`;
        assert.equal(answer.statusCode, 400, context);
        assert.deepEqual(Object.keys(answer.json).sort(), errorFields, context);
        assert.equal(answer.json.error, 'invalid_request', context);
        assert.ok(!String(answer.json.error_description).includes(marker), `${context}: the description repeats it`);
        refusals++;
      }
    }
    broker.assertRefusalsLoggedWithout(logsBefore, refusals, marker);
  });

  it('leaves the prototypes unpolluted and logs no secret and no token', () => {
    assert.ok(broker, 'the harness started');
    broker.assertUnpollutedAndLeakFree();
  });
});
