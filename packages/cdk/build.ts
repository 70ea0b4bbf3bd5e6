/**
 * Builds @token-broker/cdk: the construct library as one ES module (dist/index.js) with its declarations
 * (dist/types), and each function's handler bundled as the stack would bundle it (handlers/<function>/), so
 * that an app importing the package synthesizes without esbuild, Docker or this repository's sources.
 *
 *   tsx packages/cdk/build.ts [--out <dir>]   (default: this package's directory)
 *
 * With --out, the package's manifest and README are copied there too: the package test packs such a copy, so
 * its build never races another build of packages/cdk.
 */
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';
import ts from 'typescript';
import { brokerHandler, jwksHandler } from '../../lib/handler-function.js';
import { esbuildOptions, esmRequireBanner, lambdaBundle } from '../../lib/lambda-bundle.js';

const packageDir = fileURLToPath(new URL('.', import.meta.url));
const repoRoot = resolve(packageDir, '../..');
const { values } = parseArgs({ options: { out: { type: 'string' } } });
const outDir = resolve(values.out ?? packageDir);

rmSync(join(outDir, 'dist'), { recursive: true, force: true });
rmSync(join(outDir, 'handlers'), { recursive: true, force: true });
mkdirSync(outDir, { recursive: true });
if (outDir !== resolve(packageDir)) {
  for (const file of ['package.json', 'README.md']) copyFileSync(join(packageDir, file), join(outDir, file));
}

// The library: aws-cdk-lib and constructs are the app's own (peer dependencies); everything else is inlined.
await build({
  absWorkingDir: repoRoot,
  entryPoints: [join(packageDir, 'src/index.ts')],
  outfile: join(outDir, 'dist/index.js'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: lambdaBundle.target,
  packages: 'bundle',
  // ESM first: jsonc-parser's UMD main requires its modules by computed paths, which esbuild cannot follow.
  mainFields: [...lambdaBundle.mainFields],
  external: ['aws-cdk-lib', 'aws-cdk-lib/*', 'constructs'],
  banner: { js: esmRequireBanner },
  logLevel: 'warning',
});

// The handlers, with the options NodejsFunction uses in this repository (lib/lambda-bundle.ts).
for (const { entry, bundledName } of [brokerHandler, jwksHandler]) {
  await build(esbuildOptions(repoRoot, entry, join(outDir, 'handlers', bundledName, 'index.mjs')));
}

// Declarations of the public surface and of what it refers to, laid out as the sources are.
const config = ts.getParsedCommandLineOfConfigFile(
  join(repoRoot, 'tsconfig.cdk.json'),
  {},
  {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (diagnostic) => {
      throw new Error(ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n'));
    },
  },
);
if (config === undefined) throw new Error('tsconfig.cdk.json could not be read');
const program = ts.createProgram([join(packageDir, 'src/index.ts')], {
  ...config.options,
  noEmit: false,
  declaration: true,
  emitDeclarationOnly: true,
  rootDir: repoRoot,
  outDir: join(outDir, 'dist/types'),
});
const emitted = program.emit();
const problems = [...ts.getPreEmitDiagnostics(program), ...emitted.diagnostics];
if (problems.length > 0) {
  const host = { getCanonicalFileName: (f: string) => f, getCurrentDirectory: () => repoRoot, getNewLine: () => '\n' };
  throw new Error(ts.formatDiagnostics(problems, host));
}
