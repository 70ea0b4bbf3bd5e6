/**
 * @token-broker/cdk as a platform team gets it: built into a scratch directory, packed into a tarball, unpacked
 * into an app outside this repository whose node_modules holds only the package's peer dependencies
 * (aws-cdk-lib and constructs, linked from this repo), then imported by plain Node to synthesize a stack with
 * `new TokenBroker(...)`, and type-checked by TypeScript. No esbuild is reachable from that app, so the synth
 * proves the functions' code comes pre-bundled from the package.
 */
import assert from 'node:assert/strict';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { npm, run } from '../support/npm.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const packageName = '@token-broker/cdk';
const peers = ['aws-cdk-lib', 'constructs'];

interface Manifest {
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
}
interface CfnResource {
  Type: string;
  Properties?: Record<string, unknown>;
}

const readJson = <T>(path: string): T => JSON.parse(readFileSync(path, 'utf8')) as T;

/** The environment of a process outside this repository: no tsx loader, no test runner's options. */
function outsideEnvironment(): NodeJS.ProcessEnv {
  const { NODE_OPTIONS: _loaders, NODE_TEST_CONTEXT: _testContext, ...env } = process.env;
  return env;
}

const registry = {
  bwell: {
    wellKnownUrl: 'https://idp.example.com/.well-known/openid-configuration',
    secretName: 'token-broker/bwell',
    scopes: ['system/*.read'],
    allowedPrincipals: ['arn:aws:iam::123456789012:role/reporting'],
  },
};

describe('@token-broker/cdk: packed and used by an app of its own', () => {
  let workDir: string;
  let appDir: string;
  let packedFiles: string[];
  let outDir: string;

  before(async () => {
    workDir = mkdtempSync(join(tmpdir(), 'token-broker-cdk-package-'));
    const built = join(workDir, 'package');
    await run(process.execPath, ['--import', 'tsx', join(repoRoot, 'packages/cdk/build.ts'), '--out', built], {
      cwd: repoRoot,
    });
    // The copy holds the built package; its prepack (the build) has just run.
    const { stdout } = await npm(['pack', '--json', '--ignore-scripts', '--pack-destination', workDir], built);
    const [packed] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
    assert.ok(packed, 'npm pack reported no tarball');
    packedFiles = packed.files.map(({ path }) => path).sort();

    appDir = join(workDir, 'platform-app');
    const installed = join(appDir, 'node_modules', packageName);
    mkdirSync(installed, { recursive: true });
    await run('tar', ['-xzf', join(workDir, packed.filename), '-C', installed, '--strip-components=1']);
    for (const dependency of [...peers, '@types/node']) {
      mkdirSync(dirname(join(appDir, 'node_modules', dependency)), { recursive: true });
      symlinkSync(join(repoRoot, 'node_modules', dependency), join(appDir, 'node_modules', dependency), 'dir');
    }
    writeFileSync(join(appDir, 'package.json'), JSON.stringify({ name: 'platform-app', type: 'module' }));

    outDir = join(appDir, 'cdk.out');
    const app = `
      import { App, Stack } from 'aws-cdk-lib';
      import { parseTokenBrokerContext, TokenBroker } from '${packageName}';
      const app = new App({ outdir: ${JSON.stringify(outDir)} });
      const stack = new Stack(app, 'Platform', { env: { account: '123456789012', region: 'us-east-1' } });
      const { clients } = parseTokenBrokerContext({ clients: ${JSON.stringify(registry)} });
      new TokenBroker(stack, 'TokenBroker', { clients });
      app.synth();
    `;
    writeFileSync(join(appDir, 'app.mjs'), app);
    await run(process.execPath, ['app.mjs'], { cwd: appDir, env: outsideEnvironment() });
  });

  after(() => {
    if (workDir !== undefined) rmSync(workDir, { recursive: true, force: true });
  });

  it('packs the library, its declarations and the bundled handlers, and no sources', () => {
    assert.ok(packedFiles.includes('dist/index.js'), `no dist/index.js in ${packedFiles.join(', ')}`);
    assert.ok(packedFiles.includes('handlers/broker/index.mjs'));
    assert.ok(packedFiles.includes('handlers/jwks/index.mjs'));
    for (const path of packedFiles) {
      assert.match(path, /^(package\.json|README\.md|dist\/.+\.(js|d\.ts)|handlers\/[a-z]+\/index\.mjs(\.map)?)$/);
    }
  });

  it('depends on nothing but its peers, aws-cdk-lib and constructs, in the ranges this repository tests', () => {
    const manifest = readJson<Manifest>(join(appDir, 'node_modules', packageName, 'package.json'));
    const root = readJson<Manifest>(join(repoRoot, 'package.json'));
    assert.equal(manifest.dependencies, undefined);
    assert.deepEqual(Object.keys(manifest.peerDependencies ?? {}).sort(), peers);
    for (const peer of peers) assert.equal(manifest.peerDependencies?.[peer], root.devDependencies?.[peer]);
  });

  it("synthesizes the broker function from the package's bundled handler, with the app's registry beside it", () => {
    const template = readJson<{ Resources: Record<string, CfnResource> }>(join(outDir, 'Platform.template.json'));
    const functions = Object.values(template.Resources).filter(
      (resource) => resource.Type === 'AWS::Lambda::Function' && resource.Properties?.Handler === 'index.handler',
    );
    assert.ok(functions.length >= 1, 'no function with handler index.handler');
    for (const fn of functions) assert.equal(fn.Properties?.Runtime, 'nodejs22.x');
    // The function's S3Key names its asset; the assets manifest says which directory of the assembly holds it.
    const assets = readJson<{ files: Record<string, { source: { path: string } }> }>(
      join(outDir, 'Platform.assets.json'),
    );
    const assetDirs = functions.map((fn) => {
      const code = fn.Properties?.Code as { S3Key?: string } | undefined;
      const asset = assets.files[String(code?.S3Key).replace(/\.zip$/, '')];
      assert.ok(asset !== undefined, `no asset for ${String(code?.S3Key)}`);
      return asset.source.path;
    });
    const withRegistry = assetDirs.filter((dir) => existsSync(join(outDir, dir, 'clients.json')));
    assert.equal(withRegistry.length, 1, `one asset holds clients.json: ${assetDirs.join(', ')}`);
    const [brokerAsset] = withRegistry;
    assert.ok(brokerAsset !== undefined);
    assert.deepEqual(readdirSync(join(outDir, brokerAsset)).sort(), ['clients.json', 'index.mjs', 'index.mjs.map']);
    const shipped = readFileSync(join(appDir, 'node_modules', packageName, 'handlers/broker/index.mjs'));
    assert.ok(readFileSync(join(outDir, brokerAsset, 'index.mjs')).equals(shipped), 'the asset is the shipped bundle');
    const clients = readJson<Record<string, { secretName?: string }>>(join(outDir, brokerAsset, 'clients.json'));
    assert.deepEqual(Object.keys(clients), ['bwell']);
    assert.equal(clients.bwell?.secretName, registry.bwell.secretName);
  });

  it('type-checks in a TypeScript app against the published declarations', async () => {
    const program = `
      import { App, Stack } from 'aws-cdk-lib';
      import { type ClientRegistry, TokenBroker, type TokenBrokerProps } from '${packageName}';
      const clients: ClientRegistry = {};
      const props: TokenBrokerProps = { clients, stageName: 'v2' };
      export const broker: TokenBroker = new TokenBroker(new Stack(new App(), 'S'), 'B', props);
      export const route: string = broker.tokenUrlFor('bwell');
      // @ts-expect-error the declarations are precise: there is no such prop
      new TokenBroker(new Stack(new App(), 'T'), 'B', { clients, stage: 'v2' });
    `;
    writeFileSync(join(appDir, 'app.ts'), program);
    const compilerOptions = {
      target: 'ES2023',
      lib: ['ES2023'],
      module: 'NodeNext',
      moduleResolution: 'NodeNext',
      types: ['node'],
      strict: true,
      noEmit: true,
      skipLibCheck: true,
    };
    writeFileSync(join(appDir, 'tsconfig.json'), JSON.stringify({ compilerOptions, files: ['app.ts'] }));
    const tsc = join(repoRoot, 'node_modules/typescript/bin/tsc');
    await run(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: appDir }).catch((error: unknown) => {
      const output = error instanceof Error && 'stdout' in error ? String(error.stdout) : String(error);
      assert.fail(`the app does not type-check:\n${output}`);
    });
  });
});
