import { fileURLToPath } from 'node:url';
import { type BundlingOptions, type ICommandHooks, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { lambdaBundle } from './lambda-bundle.js';

/** The repository root, with a trailing separator: NodejsFunction runs esbuild here. */
export const repoRoot = fileURLToPath(new URL('..', import.meta.url));

/** NodejsFunction's bundling for every function of the construct: local esbuild with lib/lambda-bundle.ts's options. */
export function nodejsBundling(commandHooks: ICommandHooks): BundlingOptions {
  return {
    // Every option comes from lib/lambda-bundle.ts, which the cold-start benchmark bundles with too.
    format: OutputFormat.ESM,
    target: lambdaBundle.target,
    mainFields: [...lambdaBundle.mainFields],
    banner: lambdaBundle.banner,
    minify: lambdaBundle.minify,
    sourceMap: lambdaBundle.sourceMap,
    sourcesContent: lambdaBundle.sourcesContent,
    /*
     * The AWS SDK is bundled, not taken from the runtime. Measured with esbuild 0.28 on Node 22.23: both
     * bundles built with these options, then a fresh `node --enable-source-maps -e "await import(...)"`
     * (as Lambda runs it), 21 runs each, medians.
     * - The handler before its bundle was trimmed (now ~515 KiB, docs/benchmarks.md 5a): SDK bundled (1.16 MB): import 231 ms, whole process 343 ms, 312 ms CPU;
     *   SDK external (0.81 MB, the SDK resolved from node_modules as the runtime's copy would be):
     *   import 284 ms, process 405 ms, 403 ms CPU.
     * - Earlier handler, quieter machine: bundled (405 KB) 125 ms / 212 ms / 213 ms CPU against
     *   external (61 KB) 156 ms / 233 ms / 278 ms CPU.
     * Bundled won every run: one pre-linked file loads faster than the SDK's many CommonJS modules, and
     * the function runs the SDK version the tests ran, not whatever the runtime ships.
     */
    externalModules: [],
    // Relative alias paths resolve against projectRoot, where NodejsFunction runs esbuild.
    esbuildArgs: Object.fromEntries(Object.entries(lambdaBundle.aliases).map(([from, to]) => [`--alias:${from}`, to])),
    forceDockerBundling: false,
    commandHooks,
  };
}
