/**
 * @token-broker/client as a consumer gets it: its sources build and pack into a tarball, which is unpacked into
 * a project outside this repository whose node_modules holds only the package's declared dependencies (linked
 * from this repo's node_modules), and is imported there by plain Node and type-checked by TypeScript. The
 * package is packed from a copy, so its build here never races other tests importing packages/client/dist.
 */
import assert from 'node:assert/strict';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { isBuiltin } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

import { npm, run } from '../support/npm.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const packageDir = join(repoRoot, 'packages/client');
const sourceDir = join(packageDir, 'src');
const packageName = '@token-broker/client';

interface PackageManifest {
  name: string;
  dependencies?: Record<string, string>;
  exports: Record<string, { types: string; import: string } | string>;
}

function readManifest(dir: string): PackageManifest {
  return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as PackageManifest;
}

/** `@scope/name/sub/path` → `@scope/name`, `name/sub` → `name`. */
function packageOf(specifier: string): string {
  const parts = specifier.split('/');
  return (specifier.startsWith('@') ? parts.slice(0, 2) : parts.slice(0, 1)).join('/');
}

/** Every module specifier in the package's sources (static, type-only, re-exports and dynamic), by file. */
function sourceImports(): { file: string; specifier: string }[] {
  return readdirSync(sourceDir)
    .filter((name) => name.endsWith('.ts'))
    .flatMap((name) => {
      const file = join(sourceDir, name);
      const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
      return importedFiles.map(({ fileName }) => ({ file, specifier: fileName }));
    });
}

describe('@token-broker/client: its dependencies', () => {
  it('declares as dependencies exactly the packages its sources import', () => {
    const imported = new Set(
      sourceImports()
        .map(({ specifier }) => specifier)
        .filter((specifier) => !specifier.startsWith('.') && !isBuiltin(specifier))
        .map(packageOf),
    );
    const declared = Object.keys(readManifest(packageDir).dependencies ?? {});
    assert.deepEqual([...imported].sort(), declared.sort());
  });

  it('imports nothing from outside its own sources', () => {
    for (const { file, specifier } of sourceImports()) {
      if (!specifier.startsWith('.')) continue;
      const target = relative(sourceDir, resolve(dirname(file), specifier));
      assert.ok(!target.startsWith('..'), `${relative(repoRoot, file)} imports ${specifier}, outside the package`);
    }
  });
});

describe('@token-broker/client: packed and installed in a project of its own', () => {
  let workDir: string;
  let consumerDir: string;
  let packedFiles: string[];

  before(async () => {
    workDir = mkdtempSync(join(tmpdir(), 'token-broker-client-package-'));
    const packageCopy = join(workDir, 'client');
    cpSync(packageDir, packageCopy, {
      recursive: true,
      filter: (path) => !['dist', 'node_modules'].includes(basename(path)),
    });
    // The copy's build (prepack) finds TypeScript and @types/node where the workspace would.
    symlinkSync(join(repoRoot, 'node_modules'), join(packageCopy, 'node_modules'), 'dir');
    const { stdout } = await npm(['pack', '--json', '--pack-destination', workDir], packageCopy);
    const [packed] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
    assert.ok(packed, 'npm pack reported no tarball');
    packedFiles = packed.files.map(({ path }) => path).sort();

    consumerDir = join(workDir, 'consumer');
    const installed = join(consumerDir, 'node_modules', packageName);
    mkdirSync(installed, { recursive: true });
    await run('tar', ['-xzf', join(workDir, packed.filename), '-C', installed, '--strip-components=1']);
    // Only the declared dependencies are resolvable from the package, so an undeclared import fails to load.
    const consumerModules = join(consumerDir, 'node_modules');
    for (const dependency of [...Object.keys(readManifest(installed).dependencies ?? {}), '@types/node']) {
      mkdirSync(dirname(join(consumerModules, dependency)), { recursive: true });
      symlinkSync(join(repoRoot, 'node_modules', dependency), join(consumerModules, dependency), 'dir');
    }
    writeFileSync(join(consumerDir, 'package.json'), JSON.stringify({ name: 'consumer', type: 'module' }));
  });

  after(() => {
    if (workDir !== undefined) rmSync(workDir, { recursive: true, force: true });
  });

  it('packs only compiled JavaScript with a declaration file for each module, and its manifest', () => {
    const javascript = packedFiles.filter((path) => path.endsWith('.js'));
    assert.ok(javascript.includes('dist/index.js'), `no dist/index.js in ${packedFiles.join(', ')}`);
    for (const path of packedFiles) {
      assert.match(path, /^(package\.json|README\.md|dist\/[a-z-]+\.(js|d\.ts))$/, `unexpected file ${path}`);
    }
    for (const path of javascript) {
      assert.ok(packedFiles.includes(path.replace(/\.js$/, '.d.ts')), `${path} has no declaration file`);
    }
    const installed = join(consumerDir, 'node_modules', packageName);
    const main = readManifest(installed).exports['.'];
    assert.ok(typeof main === 'object', 'exports["."] has no conditions');
    assert.ok(existsSync(join(installed, main.types)), `exports types ${main.types} is not in the package`);
    assert.ok(existsSync(join(installed, main.import)), `exports import ${main.import} is not in the package`);
  });

  it('is importable from plain Node ESM by its package name and fetches a token', async () => {
    const program = `
      import * as client from '${packageName}';
      const broker = client.createTokenBrokerClient({
        transport: {
          kind: 'http',
          baseUrl: 'https://abc123.execute-api.us-east-1.amazonaws.com/v1/',
          region: 'us-east-1',
          credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'test-secret' },
        },
        fetch: async (url, init) => {
          if (!String(init.headers.authorization).startsWith('AWS4-HMAC-SHA256 ')) throw new Error('not signed');
          const token = { access_token: 'token-' + new URL(url).pathname, token_type: 'Bearer', expires_in: 600, scope: 'a' };
          return new Response(JSON.stringify(token), { status: 200 });
        },
      });
      const token = await broker.getToken({ client: 'bwell', scope: 'a' });
      const error = new client.TokenBrokerError(client.transportErrorCode, 'x');
      console.log(JSON.stringify({
        exports: Object.keys(client).sort(),
        accessToken: token.accessToken,
        isTokenBrokerError: client.isTokenBrokerError(error, 'transport_error'),
      }));
    `;
    writeFileSync(join(consumerDir, 'consumer.mjs'), program);
    const { NODE_OPTIONS: _loaders, ...env } = process.env;
    const { stdout } = await run(process.execPath, ['consumer.mjs'], { cwd: consumerDir, env });
    assert.deepEqual(JSON.parse(stdout), {
      exports: [
        'TokenBrokerError',
        'brokerErrorCodes',
        'createTokenBrokerClient',
        'defaultRefreshWindowSeconds',
        'isBrokerErrorCode',
        'isTokenBrokerError',
        'printable',
        'transportErrorCode',
      ],
      accessToken: 'token-/v1/clients/bwell/token',
      isTokenBrokerError: true,
    });
  });

  it('type-checks in a TypeScript consumer against the published declarations', async () => {
    const program = `
      import { type BrokerToken, createTokenBrokerClient, isTokenBrokerError, type TokenBrokerErrorCode } from '${packageName}';
      const broker = createTokenBrokerClient({ transport: { kind: 'lambda', functionName: 'token-broker' } });
      export async function token(): Promise<BrokerToken> {
        try {
          return await broker.getToken({ client: 'bwell' });
        } catch (error) {
          const code: TokenBrokerErrorCode | undefined = isTokenBrokerError(error) ? error.code : undefined;
          throw new Error(String(code));
        }
      }
      // @ts-expect-error the declarations are precise: there is no such transport
      createTokenBrokerClient({ transport: { kind: 'smtp' } });
    `;
    writeFileSync(join(consumerDir, 'consumer.ts'), program);
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
    writeFileSync(join(consumerDir, 'tsconfig.json'), JSON.stringify({ compilerOptions, files: ['consumer.ts'] }));
    const tsc = join(repoRoot, 'node_modules/typescript/bin/tsc');
    await run(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: consumerDir }).catch((error: unknown) => {
      const output = error instanceof Error && 'stdout' in error ? String(error.stdout) : String(error);
      assert.fail(`the consumer does not type-check:\n${output}`);
    });
  });
});
