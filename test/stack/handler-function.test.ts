import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { ClientRegistry } from '../../lambdas/core/config.js';
import { brokerFunction } from '../../lib/broker-function.js';
import { repoRoot } from '../../lib/bundling.js';
import { brokerHandler, type HandlerCode, handlerCodeOf, jwksHandler } from '../../lib/handler-function.js';
import { HostedJwks } from '../../lib/hosted-jwks.js';
import { runtimeRegistryOf, stagedRegistryFile } from '../../lib/registry-file.js';
import { sealingKeySecret, tokenTable } from '../../lib/token-table.js';
import { bwell, cdkJson, env, epicClient } from './support.js';

const scratch = mkdtempSync(join(tmpdir(), 'token-broker-prebundled-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** A package's handlers/ directory as item 4 ships it: each handler bundled as index.mjs, and no sources. */
function packagedHandlers(): string {
  const root = join(scratch, 'handlers');
  for (const name of [brokerHandler.bundledName, jwksHandler.bundledName]) {
    mkdirSync(join(root, name), { recursive: true });
    writeFileSync(join(root, name, 'index.mjs'), `export const handler = async () => ({ from: '${name}' });\n`);
  }
  return root;
}

const handlers = packagedHandlers();
const noSources = join(scratch, 'no-sources');
mkdirSync(noSources);

describe('where a handler comes from', () => {
  it('from source when the entry is there next to the library', () => {
    assert.deepEqual(handlerCodeOf(brokerHandler), { sourceEntry: join(repoRoot, 'lambdas/entry/lambda-handler.ts') });
    assert.deepEqual(handlerCodeOf(jwksHandler), {
      sourceEntry: join(repoRoot, 'lambdas/entry/jwks-lambda-handler.ts'),
    });
  });

  it('from the pre-bundled directory when the sources are not there', () => {
    assert.deepEqual(handlerCodeOf(brokerHandler, noSources, handlers), { bundledDirectory: join(handlers, 'broker') });
    assert.deepEqual(handlerCodeOf(jwksHandler, noSources, handlers), { bundledDirectory: join(handlers, 'jwks') });
  });

  it('fails naming both places when neither holds the handler', () => {
    assert.throws(
      () => handlerCodeOf(brokerHandler, noSources, noSources),
      (error: Error) =>
        error.message.includes(join(noSources, brokerHandler.entry)) && /index\.mjs/.test(error.message),
    );
  });
});

const clients = { bwell, epic: epicClient } as ClientRegistry;

/** The broker function of a registry built from `code`, in a stack of its own (bundled if the app bundles it). */
function brokerFunctionStack(app: App, stackName: string, code: HandlerCode, registry: ClientRegistry = clients) {
  const stack = new Stack(app, stackName, { env });
  const scope = new Construct(stack, 'Broker');
  brokerFunction(scope, {
    clients: registry,
    table: tokenTable(scope),
    sealingSecret: sealingKeySecret(scope),
    serviceName: 'token-broker',
    settings: { refreshWindowSeconds: 120 },
    logRetention: logs.RetentionDays.ONE_MONTH,
    registryFile: stagedRegistryFile(scope, registry),
    code,
  });
  return stack;
}

/** The one function of a template, and the directory its asset was staged to in the assembly. */
function functionOf(app: App, stack: Stack) {
  const template = Template.fromStack(stack);
  const [fn, ...others] = Object.values(template.findResources('AWS::Lambda::Function'));
  assert.ok(fn !== undefined && others.length === 0, 'one function');
  const { Code: code, ...properties } = fn.Properties as { Code: { S3Key: string } } & Record<string, unknown>;
  return { properties, assetDir: join(app.outdir, `asset.${code.S3Key.replace(/\.zip$/, '')}`), s3Key: code.S3Key };
}

describe('a function from the pre-bundled handler', () => {
  // Only the pre-bundled stacks are bundled: the source one would run esbuild, which another suite covers.
  const app = new App({
    outdir: join(scratch, 'cdk.out'),
    context: { ...cdkJson.context, 'aws:cdk:bundling-stacks': ['Prebundled*'] },
  });
  const bundledDirectory = join(handlers, 'broker');
  const sourceStack = brokerFunctionStack(app, 'FromSource', handlerCodeOf(brokerHandler));
  const prebundledStack = brokerFunctionStack(app, 'Prebundled', { bundledDirectory });
  // The same bundle beside another registry, in the same app: CDK's in-process asset cache must tell them apart.
  const otherRegistryStack = brokerFunctionStack(app, 'PrebundledOtherRegistry', { bundledDirectory }, {
    bwell,
  } as ClientRegistry);
  const jwksStack = new Stack(app, 'PrebundledJwks', { env });
  new HostedJwks(jwksStack, 'HostedJwks', {
    clients,
    registryFile: stagedRegistryFile(jwksStack, clients),
    serviceName: 'token-broker',
    logRetention: logs.RetentionDays.ONE_MONTH,
    code: { bundledDirectory: join(handlers, 'jwks') },
  });
  app.synth();
  const fromSource = functionOf(app, sourceStack);
  const prebundled = functionOf(app, prebundledStack);

  it('runs index.handler on the same runtime, with the same settings as the function from source', () => {
    assert.equal(prebundled.properties.Handler, 'index.handler');
    assert.equal(prebundled.properties.Runtime, 'nodejs22.x');
    assert.deepEqual(prebundled.properties.Architectures, ['arm64']);
    // Everything but the code: memory, timeout, tracing, role, log group, environment, description.
    assert.deepEqual(prebundled.properties, fromSource.properties);
  });

  it('deploys the bundle as it was given, with the registry file beside it', () => {
    assert.deepEqual(readdirSync(prebundled.assetDir).sort(), ['clients.json', 'index.mjs']);
    assert.equal(
      readFileSync(join(prebundled.assetDir, 'index.mjs'), 'utf8'),
      readFileSync(join(bundledDirectory, 'index.mjs'), 'utf8'),
    );
    assert.deepEqual(
      JSON.parse(readFileSync(join(prebundled.assetDir, 'clients.json'), 'utf8')),
      runtimeRegistryOf(clients),
    );
  });

  it('is another asset for another registry beside the same bundle', () => {
    const other = functionOf(app, otherRegistryStack);
    assert.notEqual(other.s3Key, prebundled.s3Key);
    assert.deepEqual(Object.keys(JSON.parse(readFileSync(join(other.assetDir, 'clients.json'), 'utf8'))), ['bwell']);
  });

  it('serves the hosted JWKS too, from its own pre-bundled handler', () => {
    const { properties, assetDir } = functionOf(app, jwksStack);
    assert.equal(properties.Handler, 'index.handler');
    assert.equal(properties.Runtime, 'nodejs22.x');
    assert.match(readFileSync(join(assetDir, 'index.mjs'), 'utf8'), /from: 'jwks'/);
  });
});
