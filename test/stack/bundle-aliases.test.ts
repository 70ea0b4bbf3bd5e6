/**
 * The Lambda bundle replaces a few modules with stand-ins that throw (lib/lambda-bundle.ts, lambdas/bundle/),
 * on the grounds that only code the broker never runs imports them. These tests hold that ground: a dependency
 * update that imports one of them from somewhere else fails here, before it can fail in Lambda.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { build, type Metafile } from 'esbuild';
import { esbuildOptions, lambdaBundle } from '../../lib/lambda-bundle.js';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

/** Who imports each stand-in, and how, and why that import never runs in the function. */
const expectedImporters: Record<string, { importer: RegExp; kind: string; why: string }[]> = {
  'lambdas/bundle/unbundled-credential-providers.ts': [
    {
      importer: /@aws-sdk\/credential-provider-node\/dist-es\/defaultProvider\.js$/,
      kind: 'dynamic-import',
      why: 'the default chain reaches these providers only when the environment holds no credentials',
    },
  ],
  'lambdas/bundle/unbundled-event-streams.ts': [
    {
      importer: /@smithy\/core\/dist-es\/submodules\/protocols\/HttpProtocol\.js$/,
      kind: 'dynamic-import',
      why: 'loaded only for operations that stream events',
    },
  ],
  'lambdas/bundle/unbundled-semver.ts': [
    {
      importer: /aws-xray-sdk-core\/dist\/lib\/patchers\/aws_p\.js$/,
      kind: 'require-call',
      why: 'used only inside captureAWS, the AWS SDK v2 patcher',
    },
  ],
};

describe('what the Lambda bundle replaces with stand-ins', async () => {
  const { metafile } = await build({
    ...esbuildOptions(repoRoot, lambdaBundle.entry, 'index.mjs'),
    write: false,
    metafile: true,
  });
  const importersOf = (target: string, inputs: Metafile['inputs']) =>
    Object.entries(inputs).flatMap(([path, input]) =>
      input.imports.filter((imported) => imported.path === target).map((imported) => ({ path, kind: imported.kind })),
    );

  for (const [stub, expected] of Object.entries(expectedImporters)) {
    it(`${stub} is imported only where it never runs`, () => {
      const importers = importersOf(stub, metafile.inputs);
      assert.ok(importers.length > 0, `${stub} is in the bundle (else its alias can go)`);
      for (const { path, kind } of importers) {
        const allowed = expected.find((entry) => entry.importer.test(path) && entry.kind === kind);
        assert.ok(
          allowed,
          `${path} imports ${stub} (${kind}); the known imports are safe because ${expected.map((entry) => entry.why).join('; ')}: check that this one is too`,
        );
      }
    });
  }

  it('every stand-in among the aliases is covered here', () => {
    const stubs = new Set(
      Object.values(lambdaBundle.aliases)
        .map((path) => path.replace(/^\.\//, ''))
        .filter((path) => path.includes('/unbundled-')),
    );
    assert.deepEqual([...stubs].sort(), Object.keys(expectedImporters).sort());
  });
});
