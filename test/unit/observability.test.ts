import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Tracer } from '@aws-lambda-powertools/tracer';
import { tracedWith } from '../../lambdas/adapters/observability.js';

/** The part of the Powertools Tracer that tracedWith uses, recording what happens to segments. */
function fakeTracer(enabled: boolean) {
  const events: string[] = [];
  const subsegment = (name: string) => ({
    addErrorFlag: () => events.push(`${name}:error-flag`),
    close: () => events.push(`${name}:close`),
  });
  let current: unknown = {
    addNewSubsegment: (name: string) => {
      events.push(`open:${name}`);
      return subsegment(name);
    },
  };
  const root = current;
  const tracer = {
    isTracingEnabled: () => enabled,
    getSegment: () => current,
    setSegment: (segment: unknown) => {
      current = segment;
    },
  };
  return { tracer: tracer as unknown as Tracer, events, isRootCurrent: () => current === root };
}

describe('X-Ray subsegments', () => {
  it('wraps work in a named subsegment and restores the parent', async () => {
    const { tracer, events, isRootCurrent } = fakeTracer(true);
    assert.equal(await tracedWith(tracer)('token-endpoint', async () => 42), 42);
    assert.deepEqual(events, ['open:token-endpoint', 'token-endpoint:close']);
    assert.ok(isRootCurrent());
  });

  it('flags a failure without recording the error itself', async () => {
    const { tracer, events, isRootCurrent } = fakeTracer(true);
    await assert.rejects(
      tracedWith(tracer)('discovery', async () => {
        throw new Error('body with a token');
      }),
    );
    assert.deepEqual(events, ['open:discovery', 'discovery:error-flag', 'discovery:close']);
    assert.ok(isRootCurrent());
  });

  it('does nothing when tracing is off', async () => {
    const { tracer, events } = fakeTracer(false);
    assert.equal(await tracedWith(tracer)('discovery', async () => 'ok'), 'ok');
    assert.deepEqual(events, []);
  });
});
