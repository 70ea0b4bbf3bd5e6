import assert from 'node:assert/strict';
import { ConfigError } from '../../lambdas/core/config.js';

/** The problems the one ConfigError that `run` throws names. */
export function problemsThrownBy(run: () => unknown): readonly string[] {
  try {
    run();
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.problems;
  }
  assert.fail('expected a ConfigError');
}
