/**
 * Hostile input through direct Lambda invocation (issue #4), property-based: events of any shape through any
 * qualifier, and events shaped like API Gateway's through a client's alias, through the real handler. The
 * direct-invoke contract is `{client, scope?}` through the client's alias, `{action, client}` through its admin
 * alias. The oracle and the checks of an answer are test/support/hostile-input.ts's.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { clientNamePattern } from '../../lambdas/core/config.js';
import type { ErrorCode } from '../../lambdas/core/errors.js';
import { tokenRoute } from '../../lambdas/entry/http.js';
import { apiGatewayEvent } from '../../lambdas/local/api-gateway-event.js';
import {
  aliasIn,
  type Expectation,
  HostileInputBroker,
  hostileClientNames,
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

/** Events shaped like API Gateway's, fewer than the properties' runs. */
const forgedRuns = 500;

let broker: HostileInputBroker;

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
    else if (named !== undefined && !broker.isRegistered(named)) verdict.fail('unknown_client');
    // A valid invalidation is not hostile input, and would empty the cache.
    fc.pre(!verdict.clean);
    return verdict.finish(undefined);
  }
  if (scope !== undefined && typeof scope !== 'string') verdict.fail('invalid_request');
  if (alias === undefined || alias !== named) verdict.fail('access_denied');
  else if (named !== undefined && !broker.isRegistered(named)) verdict.fail('unknown_client');
  if (named === undefined || !broker.isRegistered(named)) return verdict.finish(undefined);
  fc.pre(!(verdict.passable && !isServed(named)));
  if (scope !== undefined && typeof scope !== 'string') return verdict.finish(undefined);
  const scopes = broker.resolveExpectedScope(named, scope as string | undefined);
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
// The properties
// ---------------------------------------------------------------------------------------------------------

describe('hostile input through direct invocation (issue #4), property-based', () => {
  before(async () => {
    broker = await HostileInputBroker.start();
  });
  after(async () => {
    await broker?.close();
  });

  it('answers any direct invocation with a token of its alias’s client or throws an error named by a 4xx code', async (t) => {
    const tally = newTally();
    await fc.assert(
      fc.asyncProperty(invokeCase, async (input) => {
        if (input.kind === 'structured') {
          const qualifier = qualifierOf(input.input);
          const expectation = expectInvoke(input.input, qualifier);
          await broker.checkInvoke(invokeEventOf(input.input), qualifier, expectation, tally);
        } else {
          // An unqualified invocation is refused before its event is read.
          const notAnObject: ErrorCode = input.qualifier === undefined ? 'access_denied' : 'invalid_request';
          const expectation: Expectation =
            input.kind === 'non-object'
              ? { kind: 'refused', codes: new Set<ErrorCode>([notAnObject]) }
              : { kind: 'either', codes: 'any' };
          await broker.checkInvoke(input.event, input.qualifier, expectation, tally);
        }
      }),
      { numRuns, includeErrorInReport: true },
    );
    broker.concludeRun(t, tally, 'valid and hostile invocations');
  });

  it('never serves a scope the client is not allowed through direct invoke, and serves exactly the allowed set asked for', async (t) => {
    const tally = newTally();
    await fc.assert(
      fc.asyncProperty(
        fc.record({ client: servedName, scope: fc.option(scopeList, { nil: undefined }) }),
        async ({ client, scope }) => {
          const scopes = broker.resolveExpectedScope(client, scope);
          const expectation: Expectation =
            scopes === undefined
              ? { kind: 'refused', codes: new Set<ErrorCode>(['invalid_scope']) }
              : { kind: 'token', client, scopes };
          await broker.checkInvoke(scope === undefined ? { client } : { client, scope }, client, expectation, tally);
        },
      ),
      { numRuns, includeErrorInReport: true },
    );
    broker.concludeRun(t, tally, 'allowed and refused scope sets');
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
        await broker.checkInvoke(event, alias, { kind: 'refused', codes: 'any' }, tally);
      }),
      { numRuns: forgedRuns, includeErrorInReport: true },
    );
  });

  it('refuses a malformed or megabyte client name through direct invoke, and never repeats it', async () => {
    const { marker, names } = hostileClientNames();
    const logsBefore = broker.harness.output.text().length;
    let refusals = 0;
    for (const name of names) {
      const invocations: [Record<string, unknown>, string][] = [
        [{ client: name }, 'bwell'],
        [{ client: name, scope: read }, 'bwell'],
        [{ action: 'invalidate', client: name }, 'bwell_admin'],
      ];
      for (const [event, qualifier] of invocations) {
        const thrown = await broker.harness.invoke(event, qualifier).then(
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
    broker.assertRefusalsLoggedWithout(logsBefore, refusals, marker);
  });

  it('leaves the prototypes unpolluted and logs no secret and no token', () => {
    assert.ok(broker, 'the harness started');
    broker.assertUnpollutedAndLeakFree();
  });
});
