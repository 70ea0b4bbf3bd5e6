import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ConfigError } from '../../lambdas/core/config.js';
import { parseTokenBrokerContext } from '../../lib/context.js';

const shipped = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')).context.tokenBroker;

function problemsOf(raw: unknown): string {
  try {
    parseTokenBrokerContext(raw);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.message;
  }
  assert.fail('expected a ConfigError');
}

describe('deployment settings in the tokenBroker context', () => {
  it('reads the stack name, stage, throttle, upstream budget, refresh-ahead and secret age', () => {
    const settings = {
      stackName: 'TokenBroker-prod',
      stage: 'prod',
      throttle: { rateLimit: 12.5, burstLimit: 40 },
      upstreamBudgetMs: 4000,
      refreshAheadMaxSeconds: 120,
      secretMaxAgeSeconds: 60,
    };
    const parsed = parseTokenBrokerContext({ ...shipped, ...settings });
    const { clients: _clients, ...rest } = parsed;
    assert.deepEqual(rest, settings);
  });

  it('leaves every setting out when cdk.json does not name it, so the defaults apply', () => {
    assert.deepEqual(Object.keys(parseTokenBrokerContext(shipped)), ['clients']);
  });

  it('names every bad setting by its path', () => {
    const message = problemsOf({
      ...shipped,
      stackName: '1-starts-with-a-digit',
      stage: 'has space',
      throttle: { rateLimit: 0, burstLimit: 2.5, colour: 'red' },
      upstreamBudgetMs: 0,
      refreshAheadMaxSeconds: -1,
      secretMaxAgeSeconds: '300',
    });
    for (const expected of [
      /tokenBroker\.stackName: must be a CloudFormation stack name/,
      /tokenBroker\.stage: must be an API Gateway stage name/,
      /tokenBroker\.throttle\.rateLimit: must be a positive number/,
      /tokenBroker\.throttle\.burstLimit: must be a whole number of at least 1/,
      /tokenBroker\.throttle\.colour: unknown field/,
      /tokenBroker\.upstreamBudgetMs: must be a whole number of at least 1/,
      /tokenBroker\.refreshAheadMaxSeconds: must be a whole number of at least 0/,
      /tokenBroker\.secretMaxAgeSeconds: must be a whole number of at least 0/,
    ]) {
      assert.match(message, expected);
    }
    assert.match(problemsOf({ ...shipped, throttle: [1, 2] }), /tokenBroker\.throttle: must be an object/);
  });
});
