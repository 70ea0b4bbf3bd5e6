import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigError } from '../../lambdas/core/config.js';
import { createBrokerFromEnvironment } from '../../lambdas/entry/compose.js';
import { environmentVariables } from '../../lambdas/entry/environment.js';
import { RecordingLogger } from '../support/fakes.js';

const client = {
  wellKnownUrl: 'https://issuer.example/.well-known/openid-configuration',
  secretName: 'token-broker/bwell',
  scopes: ['system/*.read'],
};

describe('the composition root reads the registry from TOKEN_BROKER_CLIENTS_FILE', () => {
  const dir = mkdtempSync(join(tmpdir(), 'token-broker-registry-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const logger = new RecordingLogger();
  const write = (name: string, text: string) => {
    writeFileSync(join(dir, name), text);
    return join(dir, name);
  };
  const compose = (env: NodeJS.ProcessEnv) =>
    createBrokerFromEnvironment(
      {
        [environmentVariables.tableName]: 'tokens',
        [environmentVariables.sealingSecretArn]:
          'arn:aws:secretsmanager:us-east-1:123456789012:secret:token-broker/sealing-key-AbCdEf',
        ...env,
      },
      { logger },
    );
  /** Asserts a ConfigError whose message names the file (by its resolved path) and matches `pattern`. */
  const failsNaming = (env: NodeJS.ProcessEnv, path: string, pattern: RegExp) =>
    assert.throws(
      () => compose(env),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError, String(error));
        assert.ok(error.message.includes(`${environmentVariables.clientsFile} (${path})`), error.message);
        assert.match(error.message, pattern);
        return true;
      },
    );

  it('serves the clients of the file, and ignores TOKEN_BROKER_CLIENTS then', () => {
    const file = write('clients.json', JSON.stringify({ 'from-file': client }));
    const broker = compose({
      [environmentVariables.clientsFile]: file,
      [environmentVariables.clients]: JSON.stringify({ 'from-variable': client }),
    });
    assert.equal(broker.hasClient('from-file'), true);
    assert.equal(broker.hasClient('from-variable'), false);
  });

  it('resolves a relative path against LAMBDA_TASK_ROOT, as Lambda unpacks the bundle there', () => {
    write('relative.json', JSON.stringify({ relative: client }));
    const broker = compose({ [environmentVariables.clientsFile]: 'relative.json', LAMBDA_TASK_ROOT: dir });
    assert.equal(broker.hasClient('relative'), true);
  });

  it('falls back to TOKEN_BROKER_CLIENTS when the file variable is unset or empty', () => {
    const variable = { [environmentVariables.clients]: JSON.stringify({ 'from-variable': client }) };
    assert.equal(compose(variable).hasClient('from-variable'), true);
    assert.equal(compose({ ...variable, [environmentVariables.clientsFile]: '' }).hasClient('from-variable'), true);
  });

  it('fails naming the file when it is missing, empty, not JSON, or an invalid registry', () => {
    const missing = join(dir, 'missing.json');
    failsNaming({ [environmentVariables.clientsFile]: missing }, missing, /cannot be read: ENOENT/);
    const empty = write('empty.json', '');
    failsNaming({ [environmentVariables.clientsFile]: empty }, empty, /is empty/);
    const garbled = write('garbled.json', '{"bwell":');
    failsNaming({ [environmentVariables.clientsFile]: garbled }, garbled, /is not valid JSON/);
    const invalid = write('invalid.json', JSON.stringify({ bwell: { ...client, secretName: 'bad name!' } }));
    failsNaming({ [environmentVariables.clientsFile]: invalid }, invalid, /tokenBroker\.clients\.bwell\.secretName/);
  });
});

describe('the composition root reads the approved token endpoint hosts from TOKEN_BROKER_TOKEN_ENDPOINT_HOSTS', () => {
  const compose = (hosts: string) =>
    createBrokerFromEnvironment(
      {
        [environmentVariables.tableName]: 'tokens',
        [environmentVariables.clients]: JSON.stringify({ bwell: client }),
        [environmentVariables.sealingSecretArn]:
          'arn:aws:secretsmanager:us-east-1:123456789012:secret:token-broker/sealing-key-AbCdEf',
        [environmentVariables.tokenEndpointHosts]: hosts,
      },
      { logger: new RecordingLogger() },
    );

  it('accepts comma-separated hosts and wildcards, and none when empty', () => {
    assert.equal(compose('*.auth.us-east-1.amazoncognito.com,fhir.icanbwell.com').hasClient('bwell'), true);
    assert.equal(compose('').hasClient('bwell'), true);
  });

  it('fails the cold start naming the variable and the entry when a host is malformed or too broad', () => {
    for (const [hosts, problem] of [
      ['*.amazoncognito.com', /^TOKEN_BROKER_TOKEN_ENDPOINT_HOSTS\[0\]: is too broad/],
      ['fhir.icanbwell.com, auth.example.com', /^TOKEN_BROKER_TOKEN_ENDPOINT_HOSTS\[1\]: must be a lowercase DNS host/],
      ['fhir.icanbwell.com,', /^TOKEN_BROKER_TOKEN_ENDPOINT_HOSTS\[1\]: must be a lowercase DNS host/],
    ] as const) {
      assert.throws(
        () => compose(hosts),
        (error: unknown) => error instanceof ConfigError && error.problems.some((line) => problem.test(line)),
        hosts,
      );
    }
  });
});
