/**
 * lambdas/entry/audit.ts on its own: the one log line and the metric each answer leaves — served, invalidated,
 * refused, failed — what the line names, and what it leaves out (the token, a secret quoted by a defect, any
 * caller- or provider-chosen value that is not shaped as it should be).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import { maxScopeLength } from '../../lambdas/contract.js';
import type { CacheOutcome, TokenResult } from '../../lambdas/core/broker.js';
import { BrokerError, toBrokerError } from '../../lambdas/core/errors.js';
import { type AuditSink, logFailure, logInvalidated, logServed } from '../../lambdas/entry/audit.js';
import { RecordingLogger } from '../support/fakes.js';
import { assertNoLeak } from '../support/logs.js';

const callerArn = 'arn:aws:iam::123456789012:role/fhir-sync';
const invokedAs = 'arn:aws:lambda:us-east-1:123456789012:function:token-broker:bwell';

/** The part of the Powertools Metrics that the audit uses, recording each metric with its dimensions. */
function recordingMetrics() {
  const recorded: { name: string; value: number; dimensions: Record<string, string> }[] = [];
  const scoped = (dimensions: Record<string, string>) => ({
    addDimension(name: string, value: string) {
      dimensions[name] = value;
    },
    addMetric(name: string, _unit: string, value: number) {
      recorded.push({ name, value, dimensions: { ...dimensions } });
    },
  });
  const metrics = { ...scoped({}), singleMetric: () => scoped({}) };
  return { metrics: metrics as unknown as Metrics, recorded };
}

function sink() {
  const logger = new RecordingLogger();
  const { metrics, recorded } = recordingMetrics();
  const audit: AuditSink = { logger, metrics };
  return { audit, logger, recorded };
}

function served(overrides: Partial<TokenResult> & { scope?: string; accessToken?: string } = {}): TokenResult {
  const { scope = 'system/*.read', accessToken = 'token-value', ...rest } = overrides;
  return {
    response: { access_token: accessToken, token_type: 'Bearer', expires_in: 3_300, scope },
    cache: 'fetched',
    requestedScope: 'system/*.read',
    parameters: {},
    ...rest,
  };
}

/** The only line recorded. */
function onlyLine(logger: RecordingLogger) {
  assert.equal(logger.lines.length, 1, 'one line per answer');
  return logger.lines[0] as RecordingLogger['lines'][number];
}

describe('the audit line of a served token', () => {
  it('names the channel, caller, client, scope, target, cache outcome, upstream time and expiry at info', () => {
    const { audit, logger } = sink();
    logServed(audit, {
      channel: 'http',
      caller: callerArn,
      client: 'bwell',
      result: served({
        scope: 'system/*.read system/*.write',
        requestedScope: 'system/*.read system/*.write',
        parameters: { audience: 'https://api.test/', resource: 'https://fhir.test/r4' },
        upstreamMs: 42,
        asked: { minTtl: 600, forceRefresh: true },
      }),
    });
    const line = onlyLine(logger);
    assert.equal(line.level, 'info');
    assert.equal(line.message, 'token served');
    assert.deepEqual(line.attributes, {
      channel: 'http',
      caller: callerArn,
      invokedAs: undefined,
      client: 'bwell',
      scope: 'system/*.read system/*.write',
      requestedScope: 'system/*.read system/*.write',
      audience: 'https://api.test/',
      resource: 'https://fhir.test/r4',
      cache: 'fetched',
      upstreamMs: 42,
      expiresIn: 3_300,
      minTtl: 600,
      forceRefresh: true,
    });
  });

  it('names the function ARN a direct invocation came through', () => {
    const { audit, logger } = sink();
    logServed(audit, { channel: 'invoke', invokedAs, client: 'bwell', result: served({ cache: 'memory' }) });
    const { attributes } = onlyLine(logger);
    assert.equal(attributes.channel, 'invoke');
    assert.equal(attributes.invokedAs, invokedAs);
    assert.equal(attributes.caller, undefined);
  });

  it('never carries the access token', () => {
    const { audit, logger } = sink();
    const token = `eyJ${randomBytes(32).toString('base64url')}`;
    logServed(audit, { channel: 'http', caller: callerArn, client: 'bwell', result: served({ accessToken: token }) });
    assertNoLeak(JSON.stringify(logger.lines), [token]);
  });

  it('counts each cache outcome under its own metric', () => {
    const expected: Record<CacheOutcome, string> = {
      memory: 'MemoryHits',
      table: 'TableHits',
      fetched: 'TokensFetched',
      refreshed: 'TokensRefreshed',
      'stale-served': 'StaleTokensServed',
    };
    for (const [cache, metric] of Object.entries(expected) as [CacheOutcome, string][]) {
      const { audit, recorded } = sink();
      logServed(audit, { channel: 'http', caller: callerArn, client: 'bwell', result: served({ cache }) });
      assert.deepEqual(recorded, [{ name: metric, value: 1, dimensions: {} }], cache);
    }
  });

  it('logs a granted scope up to the scope limit and leaves a longer one out rather than cut it', () => {
    const atTheLimit = `system/*.read ${'a'.repeat(maxScopeLength - 'system/*.read '.length)}`;
    assert.equal(atTheLimit.length, maxScopeLength);
    const overTheLimit = `${atTheLimit}b`;
    const { audit, logger } = sink();
    logServed(audit, { channel: 'http', caller: callerArn, client: 'bwell', result: served({ scope: atTheLimit }) });
    logServed(audit, { channel: 'http', caller: callerArn, client: 'bwell', result: served({ scope: overTheLimit }) });
    assert.equal(logger.lines[0]?.attributes.scope, atTheLimit);
    assert.equal(logger.lines[1]?.attributes.scope, undefined);
  });

  it('leaves out a granted scope that is not made of RFC 6749 scope tokens', () => {
    const { audit, logger } = sink();
    for (const scope of ['system/*.read\n{"level":"ERROR"}', 'say "hi"', 'back\\slash', 'caf\u00e9', 'tab\there']) {
      logServed(audit, { channel: 'http', caller: callerArn, client: 'bwell', result: served({ scope }) });
    }
    logServed(audit, { channel: 'http', caller: callerArn, client: 'bwell', result: served({ scope: ' a  b ' }) });
    assert.deepEqual(
      logger.lines.map((line) => line.attributes.scope),
      [undefined, undefined, undefined, undefined, undefined, ' a  b '],
    );
  });
});

describe('the audit line of who asked', () => {
  it('leaves out a caller that is not shaped like an IAM ARN, or is not a string at all', () => {
    const { audit, logger } = sink();
    const callers: unknown[] = [
      'not an arn',
      `arn:${'x'.repeat(1_100)}`,
      'arn:aws:iam::123456789012:role/x\n{"forged":true}',
      42,
      { userArn: callerArn },
      '',
    ];
    for (const caller of callers) {
      logServed(audit, { channel: 'http', caller: caller as string, client: 'bwell', result: served() });
    }
    assert.deepEqual(
      logger.lines.map((line) => line.attributes.caller),
      callers.map(() => undefined),
    );
  });

  it('leaves out a client name that is not shaped like one', () => {
    const { audit, logger } = sink();
    const error = new BrokerError('invalid_request', 'the client name is not valid');
    for (const client of ['BWELL', 'bwell\n', 'a'.repeat(65), '../bwell', '', undefined]) {
      logFailure(audit, { channel: 'http', caller: callerArn, client, error });
    }
    logFailure(audit, { channel: 'http', caller: callerArn, client: 'a'.repeat(64), error });
    assert.deepEqual(
      logger.lines.map((line) => line.attributes.client),
      [undefined, undefined, undefined, undefined, undefined, undefined, 'a'.repeat(64)],
    );
  });
});

describe('the audit line of an invalidation', () => {
  it('names the client and how many tokens were dropped, at warn, and counts an invalidation', () => {
    const { audit, logger, recorded } = sink();
    logInvalidated(audit, { channel: 'invoke', invokedAs: `${invokedAs}_admin`, client: 'bwell', dropped: 3 });
    const line = onlyLine(logger);
    assert.equal(line.level, 'warn');
    assert.equal(line.message, 'client tokens invalidated');
    assert.deepEqual(line.attributes, {
      channel: 'invoke',
      caller: undefined,
      invokedAs: `${invokedAs}_admin`,
      client: 'bwell',
      dropped: 3,
    });
    assert.deepEqual(recorded, [{ name: 'Invalidations', value: 1, dimensions: {} }]);
  });
});

describe('the audit line of a failure', () => {
  it('logs a refusal (4xx) at warn with its code and description, and counts it by code', () => {
    const { audit, logger, recorded } = sink();
    logFailure(audit, {
      channel: 'http',
      caller: callerArn,
      client: 'bwell',
      error: new BrokerError('invalid_scope', 'scope "admin" is not allowed for client bwell'),
    });
    const line = onlyLine(logger);
    assert.equal(line.level, 'warn');
    assert.equal(line.message, 'token request refused');
    assert.deepEqual(line.attributes, {
      channel: 'http',
      caller: callerArn,
      invokedAs: undefined,
      client: 'bwell',
      errorCode: 'invalid_scope',
      errorDescription: 'scope "admin" is not allowed for client bwell',
    });
    assert.deepEqual(recorded, [{ name: 'Errors', value: 1, dimensions: { ErrorCode: 'invalid_scope' } }]);
  });

  it('logs a failure (5xx) at error, counted by its code', () => {
    const { audit, logger, recorded } = sink();
    logFailure(audit, {
      channel: 'invoke',
      invokedAs,
      client: 'bwell',
      error: new BrokerError('upstream_timeout', 'the token endpoint did not answer in time'),
    });
    const line = onlyLine(logger);
    assert.equal(line.level, 'error');
    assert.equal(line.message, 'token request failed');
    assert.equal(line.attributes.errorCode, 'upstream_timeout');
    assert.equal(line.attributes.causeName, undefined);
    assert.deepEqual(recorded, [{ name: 'Errors', value: 1, dimensions: { ErrorCode: 'upstream_timeout' } }]);
  });

  it('names a defect’s cause by its type only, never by its message', () => {
    const { audit, logger } = sink();
    const secret = randomBytes(24).toString('base64url');
    const defect = new RangeError(`client_secret=${secret} was not expected here`);
    logFailure(audit, { channel: 'http', caller: callerArn, client: 'bwell', error: toBrokerError(defect) });
    const line = onlyLine(logger);
    assert.equal(line.attributes.errorCode, 'server_error');
    assert.equal(line.attributes.causeName, 'RangeError');
    assertNoLeak(JSON.stringify(logger.lines), [secret]);
  });

  it('leaves out a defect’s type name that is not a plain code', () => {
    const { audit, logger } = sink();
    const defect = new Error('boom');
    defect.name = 'Error: token=abc def';
    logFailure(audit, { channel: 'http', caller: callerArn, client: 'bwell', error: toBrokerError(defect) });
    assert.ok(Object.hasOwn(onlyLine(logger).attributes, 'causeName'));
    assert.equal(onlyLine(logger).attributes.causeName, undefined);
  });

  it('never logs what a BrokerError carries beside its description: upstream error, status, cause', () => {
    const { audit, logger } = sink();
    const secret = randomBytes(24).toString('base64url');
    const error = new BrokerError('upstream_error', 'the token endpoint refused the client', {
      cause: new Error(`body: {"client_secret":"${secret}"}`),
      upstreamError: 'invalid_client',
      upstreamStatus: 401,
    });
    logFailure(audit, { channel: 'http', caller: callerArn, client: 'bwell', error });
    const text = JSON.stringify(logger.lines);
    assertNoLeak(text, [secret]);
    assert.ok(!text.includes('invalid_client'), 'the upstream error code is not in the audit line');
    assert.equal(onlyLine(logger).attributes.causeName, undefined, 'only a defect names its cause');
  });

  it('truncates a description longer than 512 characters and says so', () => {
    const { audit, logger } = sink();
    const long = `scope ${'x'.repeat(600)} is not allowed`;
    const exact = 'y'.repeat(512);
    logFailure(audit, {
      channel: 'http',
      caller: callerArn,
      client: 'bwell',
      error: new BrokerError('invalid_scope', long),
    });
    logFailure(audit, {
      channel: 'http',
      caller: callerArn,
      client: 'bwell',
      error: new BrokerError('invalid_scope', exact),
    });
    assert.equal(logger.lines[0]?.attributes.errorDescription, `${long.slice(0, 512)}… (truncated)`);
    assert.equal(logger.lines[1]?.attributes.errorDescription, exact);
  });

  it('records without metrics when none are configured', () => {
    const logger = new RecordingLogger();
    logFailure(
      { logger },
      { channel: 'http', caller: callerArn, client: 'bwell', error: new BrokerError('not_found', 'no route') },
    );
    logServed({ logger }, { channel: 'http', caller: callerArn, client: 'bwell', result: served() });
    logInvalidated({ logger }, { channel: 'http', caller: callerArn, client: 'bwell', dropped: 0 });
    assert.deepEqual(
      logger.lines.map((line) => line.message),
      ['token request refused', 'token served', 'client tokens invalidated'],
    );
  });
});
