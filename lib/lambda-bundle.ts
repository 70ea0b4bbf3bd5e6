import type { BuildOptions } from 'esbuild';

/**
 * How the function's code is bundled. The stack (NodejsFunction, lib/handler-function.ts), the cold-start benchmark
 * (test/bench/phase-cold-start.ts) and the tests that bundle all read this module, so what they measure and test
 * is the asset that deploys. It imports nothing from aws-cdk-lib, so the benchmark loads it cheaply.
 */

/**
 * An ESM bundle that contains CommonJS code (the AWS SDK, Powertools) needs a real `require`:
 * without it the SDK fails at load with "Dynamic require of node:https is not supported".
 */
export const esmRequireBanner =
  "import { createRequire } from 'module'; const require = createRequire(import.meta.url);";

const unbundledCredentialProviders = './lambdas/bundle/unbundled-credential-providers.ts';

export const lambdaBundle = {
  /** The handler module, relative to the repository root. */
  entry: 'lambdas/entry/lambda-handler.ts',
  /** The hosted JWKS's handler (lib/hosted-jwks.ts), bundled with the same options. */
  jwksEntry: 'lambdas/entry/jwks-lambda-handler.ts',
  format: 'esm',
  target: 'node22',
  mainFields: ['module', 'main'],
  banner: esmRequireBanner,
  minify: true,
  // The map ships beside the bundle, without the sources (1.8 MB → 0.6 MB), to decode a minified stack
  // trace offline. It is not loaded at run time: --enable-source-maps measured 159 ms against 143 ms for
  // importing the handler (median of 21, Node 22.23), and the broker logs error codes, not stack traces.
  sourceMap: true,
  sourcesContent: false,
  /**
   * Imports the bundle resolves to other modules (esbuild `alias`; paths relative to the repository root),
   * each because a cold-start measurement said so (docs/benchmarks.md; the reasons are in the modules).
   */
  aliases: {
    'node:http': './lambdas/bundle/node-http.ts',
    '@aws-sdk/credential-provider-ini': unbundledCredentialProviders,
    '@aws-sdk/credential-provider-sso': unbundledCredentialProviders,
    '@aws-sdk/credential-provider-process': unbundledCredentialProviders,
    '@aws-sdk/credential-provider-web-identity': unbundledCredentialProviders,
    '@smithy/core/event-streams': './lambdas/bundle/unbundled-event-streams.ts',
    semver: './lambdas/bundle/unbundled-semver.ts',
  } as Readonly<Record<string, string>>,
} as const;

/**
 * The same options for esbuild's API, for the benchmark and the tests; NodejsFunction passes them to esbuild's
 * command line. `entry` and `outfile` are absolute, or relative to `repoRoot`.
 */
export function esbuildOptions(repoRoot: string, entry: string, outfile: string): BuildOptions {
  return {
    absWorkingDir: repoRoot,
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: lambdaBundle.format,
    target: lambdaBundle.target,
    mainFields: [...lambdaBundle.mainFields],
    minify: lambdaBundle.minify,
    sourcemap: lambdaBundle.sourceMap,
    sourcesContent: lambdaBundle.sourcesContent,
    banner: { js: lambdaBundle.banner },
    alias: { ...lambdaBundle.aliases },
    logLevel: 'warning',
  };
}
