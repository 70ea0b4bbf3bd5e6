import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkTimeBudget, leaseMsFor } from '../../lambdas/core/broker.js';
import { ConfigError } from '../../lambdas/core/config.js';
import { createBrokerFromEnvironment } from '../../lambdas/entry/compose.js';
import { environmentVariables } from '../../lambdas/entry/environment.js';
import { RecordingLogger } from '../support/fakes.js';

const registry = JSON.stringify({
  bwell: {
    wellKnownUrl: 'https://issuer.example/.well-known/openid-configuration',
    secretName: 'token-broker/bwell',
    scopes: ['system/*.read'],
  },
});

function environment(upstreamBudgetMs?: string): NodeJS.ProcessEnv {
  return {
    [environmentVariables.clients]: registry,
    [environmentVariables.tableName]: 'tokens',
    [environmentVariables.sealingSecretArn]:
      'arn:aws:secretsmanager:us-east-1:123456789012:secret:token-broker/sealing-key-AbCdEf',
    ...(upstreamBudgetMs === undefined ? {} : { [environmentVariables.upstreamBudgetMs]: upstreamBudgetMs }),
  };
}

describe('the time budget of one request', () => {
  it('holds a lease for the upstream budget plus a margin', () => {
    assert.ok(leaseMsFor(5_000) > 5_000);
    assert.equal(checkTimeBudget({ upstreamBudgetMs: 5_000, leaseMs: 5_000 })?.includes('must outlast'), true);
  });

  it('fits the default budget, a lease wait and a takeover into the 15 s function timeout', () => {
    assert.equal(checkTimeBudget({ upstreamBudgetMs: 5_000 }), undefined);
    assert.equal(checkTimeBudget({ upstreamBudgetMs: 1_500 }), undefined);
  });

  it('refuses a budget that would let a waiter that takes a lapsed lease over outlive the function', () => {
    // Waiting out one lease (budget + margin) and then spending the budget again: 2 × 7 s is over 15 s.
    const problem = checkTimeBudget({ upstreamBudgetMs: 7_000 });
    assert.match(problem ?? '', /over the function timeout of 15000 ms/);
    assert.match(problem ?? '', /at most \d+ ms fits/);
    assert.equal(checkTimeBudget({ upstreamBudgetMs: 7_000, functionTimeoutMs: 30_000 }), undefined);
  });

  it('makes the composition root reject an upstream budget that does not fit the function timeout', () => {
    const logger = new RecordingLogger();
    assert.ok(createBrokerFromEnvironment(environment(), { logger }));
    assert.ok(createBrokerFromEnvironment(environment('5000'), { logger }));
    assert.throws(
      () => createBrokerFromEnvironment(environment('8000'), { logger }),
      (error: unknown) =>
        error instanceof ConfigError &&
        error.problems.some(
          (problem) =>
            problem.startsWith(`${environmentVariables.upstreamBudgetMs}: `) && /function timeout/.test(problem),
        ),
    );
  });
});
