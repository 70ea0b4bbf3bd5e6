import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { App } from 'aws-cdk-lib';
import { environmentVariables } from '../../lambdas/entry/environment.js';
import { apiGatewayEvent } from '../../lambdas/local/api-gateway-event.js';
import type { LocalSecretClient } from '../../lambdas/local/oidc-server.js';
import { parseTokenBrokerContext } from '../../lib/context.js';
import { esmRequireBanner } from '../../lib/lambda-bundle.js';
import { registryFileName } from '../../lib/token-broker.js';
import { TokenBrokerStack } from '../../lib/token-broker-stack.js';
import { apiGatewayContext } from '../support/lambda-context.js';
import { type LocalParts, startLocalParts } from '../support/local-parts.js';
import { assertNoLeak } from '../support/logs.js';
import { cdkJson, kmsKeys } from './support.js';

const handlerEntry = new URL('../../lambdas/entry/lambda-handler.ts', import.meta.url);

interface BundleRun {
  answer: { statusCode: number; body: string };
  /** What the process wrote to stdout and stderr: the handler's log lines. */
  output: string;
}

/** Runs in a fresh process (ESM, no TypeScript loader), as a Lambda container does: import, one invocation. */
const invokeBundleCode = `
import { writeSync } from 'node:fs';
const { handler } = await import(process.env.TEST_BUNDLE_URL);
const context = { ...JSON.parse(process.env.TEST_CONTEXT), getRemainingTimeInMillis: () => 15000 };
const answer = await handler(JSON.parse(process.env.TEST_EVENT), context);
writeSync(3, JSON.stringify(answer));
process.exit(0);
`;

/** One invocation of the bundle in a new process: asynchronous, so that servers in this process can answer it. */
function invokeBundle(bundle: string, env: NodeJS.ProcessEnv, event: unknown): Promise<BundleRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', invokeBundleCode], {
      env: {
        ...env,
        TEST_BUNDLE_URL: pathToFileURL(bundle).href,
        TEST_EVENT: JSON.stringify(event),
        TEST_CONTEXT: JSON.stringify(apiGatewayContext()),
      },
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    });
    let output = '';
    let result = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk;
    });
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk;
    });
    const channel = child.stdio[3];
    if (channel === null || channel === undefined || !('setEncoding' in channel)) {
      reject(new Error('no result channel to the bundle process'));
      return;
    }
    channel.setEncoding('utf8').on('data', (chunk: string) => {
      result += chunk;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      if (code !== 0 || result === '') reject(new Error(`the bundle process exited with ${code}:\n${output}`));
      else resolve({ answer: JSON.parse(result), output });
    });
  });
}

/** The broker's function, not the hosted JWKS's: only the broker is given the token table. */
const brokerFunction = (properties: Record<string, unknown>) =>
  JSON.stringify(properties.Environment ?? {}).includes(environmentVariables.tableName);

/** The audit line (`token served`) the handler logged, parsed. */
function servedLine(output: string): Record<string, unknown> {
  const line = output
    .split('\n')
    .filter((text) => text.startsWith('{'))
    .map((text) => JSON.parse(text) as Record<string, unknown>)
    .find((entry) => entry.message === 'token served');
  assert.ok(line !== undefined, `no "token served" line in:\n${output}`);
  return line;
}

/**
 * The one real synth of the suite: bundling on (local esbuild, no Docker), into a temporary outdir.
 * It needs lambdas/entry/lambda-handler.ts.
 */
describe('the synthesized function asset (real bundling)', () => {
  assert.ok(existsSync(handlerEntry), 'lambdas/entry/lambda-handler.ts exists');
  const outdir = mkdtempSync(join(tmpdir(), 'token-broker-synth-'));
  const tableName = 'token-broker-bundle-test';
  const secretName = 'token-broker/bundle';
  const oidcClient: LocalSecretClient = {
    clientId: 'bundle-id',
    clientSecret: randomBytes(24).toString('base64url'),
    authMethod: 'client_secret_post',
    scopes: ['system/*.read'],
  };
  let parts: LocalParts;
  /** The registry the stack bundles: cdk.json's clients and `bundled`, registered at the local identity provider. */
  let registry: Record<string, unknown>;
  let template: { Resources: Record<string, { Type: string; Properties: Record<string, never> }> };
  let assetDir: string;
  let bundle: string;
  /** The hosted JWKS function's asset: the registry has a client with public keys to publish. */
  let jwksAssetDir: string;
  const hostedClient = {
    wellKnownUrl: 'https://fhir.epic.example/.well-known/smart-configuration',
    secretName: 'token-broker/hosted',
    scopes: ['system/Patient.read'],
    authMethod: 'private_key_jwt',
    jwks: [{ kty: 'RSA', kid: 'hosted-2026', n: 'sXch', e: 'AQAB' }],
  };

  // The local parts first: the registry bundled into the asset names the local identity provider's address.
  before(async () => {
    parts = await startLocalParts({ tableName, secretName, clientName: 'bundled', client: oidcClient });
    const bundled = JSON.parse(parts.env[environmentVariables.clients] ?? '{}') as Record<string, unknown>;
    registry = { ...cdkJson.context.tokenBroker.clients, ...bundled, hosted: hostedClient };
    // Fields only the deployment uses, which stay out of clients.json.
    const deployOnly = {
      allowedPrincipals: ['arn:aws:iam::111111111111:role/app'],
      adminPrincipals: ['arn:aws:iam::111111111111:role/ops'],
      secretKmsKeyArn: kmsKeys.secret,
    };
    const clients = { ...registry, bwell: { ...cdkJson.context.tokenBroker.clients.bwell, ...deployOnly } };
    const tokenBroker = { ...cdkJson.context.tokenBroker, clients };
    const app = new App({ outdir, context: { ...cdkJson.context, tokenBroker } });
    const stack = new TokenBrokerStack(app, 'TokenBroker', {
      config: parseTokenBrokerContext(tokenBroker),
      env: { account: '111111111111', region: 'us-east-1' },
    });
    template = app.synth().getStackByName(stack.stackName).template;
    const assetOf = (broker: boolean) => {
      const fn = Object.values(template.Resources).find(
        (r) => r.Type === 'AWS::Lambda::Function' && brokerFunction(r.Properties) === broker,
      );
      const s3Key = (fn?.Properties.Code as { S3Key: string } | undefined)?.S3Key ?? '';
      return join(outdir, `asset.${s3Key.replace(/\.zip$/, '')}`);
    };
    assetDir = assetOf(true);
    bundle = join(assetDir, 'index.mjs');
    jwksAssetDir = assetOf(false);
  });
  after(async () => {
    await parts?.close();
    rmSync(outdir, { recursive: true, force: true });
  });

  it('contains the bundled handler index.mjs and its source map, of a sane size', () => {
    assert.ok(existsSync(bundle), `${bundle} exists`);
    const bytes = statSync(bundle).size;
    // ~515 KiB minified with the AWS SDK inside (docs/benchmarks.md, 5a); far more would mean something unexpected
    // got bundled (and a slower cold start: see the measurements in lib/bundling.ts).
    assert.ok(bytes > 50_000 && bytes < 2_000_000, `index.mjs is ${bytes} bytes`);
    assert.ok(existsSync(join(assetDir, 'index.mjs.map')), 'source map shipped');
  });

  it('is minified ESM that starts with the createRequire banner and bundles the AWS SDK', () => {
    const code = readFileSync(bundle, 'utf8');
    assert.ok(code.startsWith(esmRequireBanner), code.slice(0, 120));
    assert.doesNotMatch(code, /from\s*["']@aws-sdk\//, 'no external @aws-sdk import');
    assert.match(code, /export\s*\{[^}]*\bhandler\b/);
    const lines = code.split('\n').length;
    assert.ok(code.length / lines > 2000, `minified (${lines} lines for ${code.length} characters)`);
    const map = JSON.parse(readFileSync(join(assetDir, 'index.mjs.map'), 'utf8'));
    assert.equal(map.sourcesContent, undefined, 'sources are not embedded in the map');
  });

  it('ships the registry as clients.json, without the deploy-time fields, and points the function at it', () => {
    const shipped = JSON.parse(readFileSync(join(assetDir, registryFileName), 'utf8'));
    assert.deepEqual(shipped, registry);
    const fn = Object.values(template.Resources).find(
      (r) => r.Type === 'AWS::Lambda::Function' && brokerFunction(r.Properties),
    );
    assert.ok(fn !== undefined, 'the function is in the template');
    const variables = (fn.Properties.Environment as unknown as { Variables: Record<string, unknown> }).Variables;
    assert.equal(variables[environmentVariables.clientsFile], registryFileName);
    assert.equal(variables[environmentVariables.clients], undefined, 'the registry is not in the environment');
  });

  it('loads on Node 22 and exports a handler function (no "Dynamic require" failure)', () => {
    const result = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const m = await import(${JSON.stringify(bundle)}); console.log(typeof m.handler);`,
      ],
      {
        encoding: 'utf8',
        timeout: 60_000,
        env: {
          ...process.env,
          // As Lambda runs it: the registry file named relative to the task root, where the asset is unpacked.
          [environmentVariables.clientsFile]: registryFileName,
          LAMBDA_TASK_ROOT: assetDir,
          [environmentVariables.tableName]: 'tokens',
          [environmentVariables.sealingSecretArn]:
            'arn:aws:secretsmanager:us-east-1:123456789012:secret:token-broker/sealing-key-AbCdEf',
          AWS_REGION: 'us-east-1',
        },
      },
    );
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout.trim(), 'function');
  });

  it('takes node:http without its ES module facade, and leaves out what Lambda never runs', () => {
    const code = readFileSync(bundle, 'utf8');
    // lib/lambda-bundle.ts: the facade of node:http loads Node's undici for its WebSocket getters.
    assert.doesNotMatch(code, /from\s*"node:http"/);
    assert.match(code, /getBuiltinModule\("node:http"\)/);
    const absent = {
      // STS itself is bundled (secretless clients mint assertions with it); the credential provider is not.
      'the web-identity credential provider': 'AWS_WEB_IDENTITY_TOKEN_FILE',
      'the SSO client': 'GetRoleCredentials',
      'the credential_process provider': 'credential_process',
      semver: 'SEMVER_SPEC_VERSION',
    };
    for (const [part, marker] of Object.entries(absent)) {
      assert.ok(!code.includes(marker), `${part} is not bundled (found ${marker})`);
    }
  });

  it('bundles the hosted JWKS function the same way, with the same clients.json, and it serves a client key', async () => {
    const jwksBundle = join(jwksAssetDir, 'index.mjs');
    assert.notEqual(jwksAssetDir, assetDir);
    const code = readFileSync(jwksBundle, 'utf8');
    assert.ok(code.startsWith(esmRequireBanner), code.slice(0, 120));
    assert.deepEqual(JSON.parse(readFileSync(join(jwksAssetDir, registryFileName), 'utf8')), registry);
    // It holds no table, Secrets Manager or token-endpoint code: a public function with the least in it.
    for (const marker of ['GetSecretValue', 'PutItem', 'client_credentials']) {
      assert.ok(!code.includes(marker), `${marker} is not in the JWKS bundle`);
    }
    const run = await invokeBundle(
      jwksBundle,
      {
        ...process.env,
        [environmentVariables.clients]: undefined,
        [environmentVariables.clientsFile]: registryFileName,
        LAMBDA_TASK_ROOT: jwksAssetDir,
        AWS_REGION: 'us-east-1',
      },
      { rawPath: '/clients/hosted/jwks.json', requestContext: { http: { method: 'GET' } } },
    );
    assert.equal(run.answer.statusCode, 200, run.output);
    assert.deepEqual(JSON.parse(run.answer.body), { keys: [{ use: 'sig', ...hostedClient.jwks[0] }] });
  });

  describe('serving tokens from the bundled clients.json: DynamoDB, Secrets Manager and an identity provider over TLS, all local', () => {
    let env: NodeJS.ProcessEnv;
    const request = apiGatewayEvent({
      method: 'POST',
      path: '/clients/bundled/token',
      callerArn: 'arn:aws:iam::000000000000:role/bundle-test-caller',
    });

    before(() => {
      // NODE_EXTRA_CA_CERTS (the test CA) and PATH come from the test runner. Credentials as Lambda provides them,
      // in the environment, and no profile: the bundle has no profile reader. The registry only in the asset's
      // clients.json, as the stack configures the function.
      env = {
        ...process.env,
        ...parts.env,
        [environmentVariables.clients]: undefined,
        [environmentVariables.clientsFile]: registryFileName,
        LAMBDA_TASK_ROOT: assetDir,
        AWS_PROFILE: undefined,
        AWS_SESSION_TOKEN: 'test-session',
      };
    });

    it('fetches a token on a miss, and a fresh process then serves it from the table', async () => {
      const { oidc, secretsManager } = parts;
      const tokenRequests = oidc.tokenRequests();
      const secretReads = secretsManager.getSecretValueCalls();

      const miss = await invokeBundle(bundle, env, request);
      assert.equal(miss.answer.statusCode, 200, miss.answer.body);
      const token = JSON.parse(miss.answer.body) as Record<string, unknown>;
      assert.deepEqual(Object.keys(token).sort(), ['access_token', 'expires_in', 'scope', 'token_type']);
      assert.equal(token.scope, 'system/*.read');
      assert.equal(oidc.tokenRequests() - tokenRequests, 1, 'one token-endpoint call');
      assert.equal(servedLine(miss.output).cache, 'fetched');

      const hit = await invokeBundle(bundle, env, request);
      assert.equal(hit.answer.statusCode, 200, hit.answer.body);
      assert.equal((JSON.parse(hit.answer.body) as Record<string, unknown>).access_token, token.access_token);
      assert.equal(oidc.tokenRequests() - tokenRequests, 1, 'no second token-endpoint call');
      assert.equal(servedLine(hit.output).cache, 'table');
      // Each fresh process reads the secret and the sealing key once: the table's token is sealed under both.
      assert.equal(secretsManager.getSecretValueCalls() - secretReads, 4);

      assertNoLeak(miss.output + hit.output, [oidcClient.clientSecret, parts.sealingKey, String(token.access_token)]);
    });
  });
});
