import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { App } from 'aws-cdk-lib';
import { environmentVariables } from '../../lambdas/entry/environment.js';
import { parseTokenBrokerContext } from '../../lib/context.js';
import { esmRequireBanner } from '../../lib/token-broker.js';
import { TokenBrokerStack } from '../../lib/token-broker-stack.js';

const cdkJson = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8'));
const handlerEntry = new URL('../../lambdas/entry/lambda-handler.ts', import.meta.url);

/**
 * The one real synth of the suite: bundling on (local esbuild, no Docker), into a temporary outdir.
 * It needs lambdas/entry/lambda-handler.ts.
 */
describe('the synthesized function asset (real bundling)', () => {
  assert.ok(existsSync(handlerEntry), 'lambdas/entry/lambda-handler.ts exists');
  const outdir = mkdtempSync(join(tmpdir(), 'token-broker-synth-'));
  after(() => rmSync(outdir, { recursive: true, force: true }));

  const app = new App({ outdir, context: cdkJson.context });
  const stack = new TokenBrokerStack(app, 'TokenBroker', {
    config: parseTokenBrokerContext(cdkJson.context.tokenBroker),
    env: { account: '111111111111', region: 'us-east-1' },
  });
  const assembly = app.synth();
  const template = assembly.getStackByName(stack.stackName).template;
  const fn = Object.values(
    template.Resources as Record<string, { Type: string; Properties: Record<string, never> }>,
  ).find((r) => r.Type === 'AWS::Lambda::Function');
  const s3Key = (fn?.Properties.Code as { S3Key: string } | undefined)?.S3Key ?? '';
  const assetDir = join(outdir, `asset.${s3Key.replace(/\.zip$/, '')}`);
  const bundle = join(assetDir, 'index.mjs');

  it('contains the bundled handler index.mjs and its source map, of a sane size', () => {
    assert.ok(existsSync(bundle), `${bundle} exists`);
    const bytes = statSync(bundle).size;
    // ~1.1 MB minified with the AWS SDK and undici inside; far more would mean something unexpected got
    // bundled (and a slower cold start: see the measurements in lib/token-broker.ts).
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

  it('loads on Node 22 and exports a handler function (no "Dynamic require" failure)', () => {
    const clients = JSON.stringify(cdkJson.context.tokenBroker.clients);
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
          [environmentVariables.clients]: clients,
          [environmentVariables.tableName]: 'tokens',
          AWS_REGION: 'us-east-1',
        },
      },
    );
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout.trim(), 'function');
  });
});
