import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BrokerError } from '../../lambdas/core/errors.js';
import { defaultMaxTokenRequestsPerHour } from '../../lambdas/core/issuance-budget.js';
import { IssuanceGate } from '../../lambdas/core/issuance-gate.js';
import { tableFailureReport } from '../../lambdas/core/shared-tier.js';
import { CountingMetrics, FakeClock, MapTokenCache, RecordingLogger } from '../support/fakes.js';

function setup() {
  // Ten minutes before the hour ends.
  const clock = new FakeClock(Date.UTC(2026, 10, 29, 12, 50, 0));
  const cache = new MapTokenCache();
  const metrics = new CountingMetrics();
  const logger = new RecordingLogger();
  const newGate = () =>
    new IssuanceGate({ cache, clock, metrics, logger, reportFailure: tableFailureReport(metrics, logger) });
  return { clock, cache, metrics, logger, gate: newGate(), newGate };
}

async function refusedForSeconds(promise: Promise<unknown>, seconds: number) {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof BrokerError);
    assert.equal(error.code, 'unavailable');
    assert.equal(error.retryAfterSeconds, seconds);
    return true;
  });
}

describe('IssuanceGate', () => {
  it('counts each call across containers and refuses the one past the limit until the hour ends', async () => {
    const { newGate, cache, metrics, logger } = setup();
    const [first, second] = [newGate(), newGate()];
    await first.take('bwell', { maxTokenRequestsPerHour: 2 });
    await second.take('bwell', { maxTokenRequestsPerHour: 2 });
    await refusedForSeconds(first.take('bwell', { maxTokenRequestsPerHour: 2 }), 600);
    assert.equal(cache.issuance.get(`bwell@${Date.UTC(2026, 10, 29, 12)}`), 2);
    assert.deepEqual(metrics.budgetUsage, [50, 100]);
    assert.equal(metrics.of('IssuanceBudgetExhausted'), 1);
    assert.deepEqual(logger.lines.find((line) => line.level === 'error')?.attributes, {
      client: 'bwell',
      maxTokenRequestsPerHour: 2,
      resumesInSeconds: 600,
    });
  });

  it('refuses without asking the table again once it saw the budget spent, and lets calls go in the next hour', async () => {
    const { gate, cache, clock } = setup();
    const countIssuance = cache.countIssuance.bind(cache);
    let counts = 0;
    cache.countIssuance = (clientName, window, limit) => {
      counts += 1;
      return countIssuance(clientName, window, limit);
    };
    await gate.take('bwell', { maxTokenRequestsPerHour: 1 });
    await refusedForSeconds(gate.take('bwell', { maxTokenRequestsPerHour: 1 }), 600);
    await refusedForSeconds(gate.take('bwell', { maxTokenRequestsPerHour: 1 }), 600);
    assert.equal(counts, 2);
    await gate.take('plain', { maxTokenRequestsPerHour: 1 });
    clock.advance(600_000);
    await gate.take('bwell', { maxTokenRequestsPerHour: 1 });
    assert.equal(counts, 4);
  });

  it('holds a client without a limit of its own to the default', async () => {
    const { gate, metrics } = setup();
    await gate.take('bwell', {});
    assert.deepEqual(metrics.budgetUsage, [100 / defaultMaxTokenRequestsPerHour]);
  });

  it('warns once, on the first call past the share the alarm watches', async () => {
    const { gate, logger } = setup();
    for (let call = 0; call < 10; call++) await gate.take('bwell', { maxTokenRequestsPerHour: 10 });
    const warnings = logger.lines.filter((line) => line.level === 'warn');
    assert.deepEqual(warnings, [
      {
        level: 'warn',
        message: 'client has made most of its token requests for this hour',
        attributes: { client: 'bwell', used: 9, maxTokenRequestsPerHour: 10 },
      },
    ]);
  });

  it('lets the call go when the table cannot count it, and reports it', async () => {
    const { gate, cache, metrics, logger } = setup();
    cache.failing = true;
    await gate.take('bwell', { maxTokenRequestsPerHour: 1 });
    await gate.take('bwell', { maxTokenRequestsPerHour: 1 });
    assert.equal(metrics.of('SharedCacheErrors'), 2);
    assert.deepEqual(metrics.budgetUsage, []);
    assert.equal(
      logger.lines[0]?.message,
      "token table issuance count failed; continuing with this container's memory",
    );
  });
});
