import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { environmentVariables } from '../../lambdas/entry/environment.js';

const handlerModule = fileURLToPath(new URL('../../lambdas/entry/lambda-handler.ts', import.meta.url));

/** Imports the Lambda handler module in a fresh process, as a cold start does. */
function coldStart(env: Record<string, string>) {
  return spawnSync(process.execPath, ['--import', 'tsx', '-e', `await import(${JSON.stringify(handlerModule)})`], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 30_000,
  });
}

describe('cold start', () => {
  it('fails with a message naming the client and the field when the registry is bad', () => {
    const result = coldStart({
      [environmentVariables.tableName]: 'tokens',
      [environmentVariables.clients]: JSON.stringify({
        bwell: {
          wellKnownUrl: 'http://cognito-idp.example/.well-known/openid-configuration',
          secretName: 'token-broker/bwell',
          scopes: ['system/*.read'],
        },
      }),
    });
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /ConfigError/);
    assert.match(result.stderr, /TOKEN_BROKER_CLIENTS\.bwell\.wellKnownUrl: must be an https URL/);
  });

  it('fails naming the variable when the table is not configured', () => {
    const result = coldStart({
      [environmentVariables.tableName]: '',
      [environmentVariables.clients]: JSON.stringify({
        bwell: {
          wellKnownUrl: 'https://cognito-idp.example/.well-known/openid-configuration',
          secretName: 'token-broker/bwell',
          scopes: ['system/*.read'],
        },
      }),
    });
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /TOKEN_BROKER_TABLE is not set/);
  });

  it('fails naming the variable when the sealing key secret is not configured', () => {
    const result = coldStart({
      [environmentVariables.tableName]: 'tokens',
      [environmentVariables.sealingSecretArn]: '',
      [environmentVariables.clients]: JSON.stringify({
        bwell: {
          wellKnownUrl: 'https://cognito-idp.example/.well-known/openid-configuration',
          secretName: 'token-broker/bwell',
          scopes: ['system/*.read'],
        },
      }),
    });
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /TOKEN_BROKER_SEALING_SECRET_ARN is not set/);
  });

  it('starts with the registry the repository ships', () => {
    const result = coldStart({
      [environmentVariables.tableName]: 'tokens',
      [environmentVariables.sealingSecretArn]:
        'arn:aws:secretsmanager:us-east-1:123456789012:secret:token-broker/sealing-key-AbCdEf',
      [environmentVariables.clients]: JSON.stringify({
        bwell: {
          wellKnownUrl:
            'https://cognito-idp.us-east-1.amazonaws.com/us-east-1_e4iVm1J4X/.well-known/openid-configuration',
          secretName: 'token-broker/bwell',
          scopes: ['system/*.read', 'system/*.write'],
          defaultScope: 'system/*.read',
          authMethod: 'client_secret_post',
        },
      }),
    });
    assert.equal(result.status, 0, result.stderr);
  });
});
