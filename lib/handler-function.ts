import { copyFileSync, cpSync, existsSync } from 'node:fs';
import { isAbsolute, join, posix, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AssetHashType, type Duration, type ILocalBundling } from 'aws-cdk-lib';
import type * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { type ICommandHooks, NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { nodejsBundling, repoRoot } from './bundling.js';
import { lambdaBundle } from './lambda-bundle.js';

/** One of the construct's handlers: where its source is, and the name of its pre-bundled copy. */
export interface HandlerEntry {
  /** The handler module, relative to the repository root. */
  readonly entry: string;
  /** The directory under the package's `handlers/` that holds it bundled, as `index.mjs`. */
  readonly bundledName: string;
}

export const brokerHandler: HandlerEntry = { entry: lambdaBundle.entry, bundledName: 'broker' };
export const jwksHandler: HandlerEntry = { entry: lambdaBundle.jwksEntry, bundledName: 'jwks' };

/**
 * Where a function's code comes from: its TypeScript entry, bundled by esbuild at synth (this repository), or a
 * directory that already holds the bundle as `index.mjs` (the construct used as a package, without the sources).
 */
export type HandlerCode = { readonly sourceEntry: string } | { readonly bundledDirectory: string };

/** Beside the compiled `lib/`, where a package carries the pre-bundled handlers. */
const packagedHandlers = fileURLToPath(new URL('../handlers/', import.meta.url));

/** From source when the entry is there next to the library, otherwise the pre-bundled copy. */
export function handlerCodeOf(
  handler: HandlerEntry,
  sourceRoot: string = repoRoot,
  bundledRoot: string = packagedHandlers,
): HandlerCode {
  const sourceEntry = join(sourceRoot, handler.entry);
  if (existsSync(sourceEntry)) return { sourceEntry };
  const bundledDirectory = join(bundledRoot, handler.bundledName);
  if (existsSync(join(bundledDirectory, 'index.mjs'))) return { bundledDirectory };
  throw new Error(
    `no code for the ${handler.bundledName} handler: neither ${sourceEntry} nor ${bundledDirectory}/index.mjs`,
  );
}

/** A file the deployment adds beside a bundle (the registry): copied from `source` to `name` in the asset. */
export interface BundledFile {
  /** An absolute path. */
  readonly source: string;
  /** Its name inside the asset. */
  readonly name: string;
}

export interface HandlerFunctionProps {
  readonly code: HandlerCode;
  readonly description: string;
  readonly role: iam.IRole;
  readonly logGroup: logs.ILogGroup;
  readonly memorySize: number;
  readonly timeout: Duration;
  readonly environment: Record<string, string>;
  readonly tracing?: lambda.Tracing;
  readonly bundledFiles: readonly BundledFile[];
}

/**
 * A function of the construct: Node 22 on ARM, its code from source (NodejsFunction, esbuild with
 * lib/lambda-bundle.ts's options) or pre-bundled (`index.handler` in a copy of the bundle's directory), with the
 * deployment's files beside the code either way.
 */
export function handlerFunction(scope: Construct, id: string, props: HandlerFunctionProps): lambda.Function {
  const { code, bundledFiles, tracing, ...common } = props;
  const options = {
    ...common,
    runtime: lambda.Runtime.NODEJS_22_X,
    architecture: lambda.Architecture.ARM_64,
    ...(tracing === undefined ? {} : { tracing }),
  };
  if ('sourceEntry' in code) {
    return new NodejsFunction(scope, id, {
      ...options,
      entry: code.sourceEntry,
      handler: 'handler',
      projectRoot: repoRoot,
      depsLockFilePath: `${repoRoot}package-lock.json`,
      bundling: nodejsBundling(copyingHooks(bundledFiles)),
    });
  }
  return new lambda.Function(scope, id, {
    ...options,
    handler: 'index.handler',
    code: lambda.Code.fromAsset(code.bundledDirectory, {
      // The output's hash, so that another registry beside the same bundle is another asset.
      assetHashType: AssetHashType.OUTPUT,
      bundling: {
        // Never pulled: copying files always succeeds locally.
        image: lambda.Runtime.NODEJS_22_X.bundlingImage,
        local: new BundleCopy(code.bundledDirectory, bundledFiles),
      },
    }),
  });
}

/**
 * The pre-bundled code and the deployment's files, copied into the asset. Its fields are data on purpose: CDK keys
 * its in-process bundling cache on the bundling options as JSON, so the files' content-hashed names keep one
 * registry's asset from being handed to another.
 */
class BundleCopy implements ILocalBundling {
  constructor(
    readonly directory: string,
    readonly files: readonly BundledFile[],
  ) {}

  tryBundle(outputDir: string): boolean {
    cpSync(this.directory, outputDir, { recursive: true });
    for (const { source, name } of this.files) copyFileSync(source, join(outputDir, name));
    return true;
  }
}

/**
 * NodejsFunction's hooks that copy the files into the bundle once esbuild has run. A file inside the project (the
 * cloud assembly under cdk.out) is also reachable from the Docker fallback, which mounts the project at inputDir.
 * The commands run in a POSIX shell (local bundling on Linux or macOS, or Docker).
 */
function copyingHooks(files: readonly BundledFile[]): ICommandHooks {
  return {
    beforeBundling: () => [],
    beforeInstall: () => [],
    afterBundling: (inputDir: string, outputDir: string) =>
      files.map(({ source, name }) => {
        const inProject = relative(repoRoot, source);
        const from =
          inProject.startsWith('..') || isAbsolute(inProject) ? source : posix.join(inputDir, ...inProject.split(sep));
        return `cp ${shellQuoted(from)} ${shellQuoted(posix.join(outputDir, name))}`;
      }),
  };
}

/** A POSIX shell word for any string: single-quoted, each embedded quote closed, escaped and reopened. */
function shellQuoted(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}
