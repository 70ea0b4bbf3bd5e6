/**
 * Section 5: the deployed asset and a cold start. lambdas/entry/lambda-handler.ts is bundled with esbuild
 * as the stack's NodejsFunction bundles it (lib/handler-function.ts), then a fresh Node process per run imports
 * the bundle and serves one request whose token is already in the table (a fresh container's memory is
 * empty): import time + first answer, median of 20.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { deflateRawSync } from 'node:zlib';
import { build } from 'esbuild';
import { parseClientRegistryJson } from '../../lambdas/core/config.js';
import { environmentVariables } from '../../lambdas/entry/environment.js';
import { esbuildOptions, lambdaBundle } from '../../lib/lambda-bundle.js';
import {
  apiGatewayInvokedArn,
  phaseCommand,
  print,
  repoRoot,
  scaled,
  setup,
  tokenEvent,
  tokenRequests,
} from './child.js';
import { newContainer } from './container.js';
import { shellQuote, track } from './processes.js';
import { summarizeColdStartProfile } from './profile.js';
import type { Figure } from './protocol.js';
import { bytes, count, median, ms } from './stats.js';

const coldStartTargetMs = 150;

interface ColdRun {
  importMs: number;
  firstMs: number;
  /** From the process's time origin to the first answer: Node's own start-up included. */
  sinceStartMs: number;
  /** From spawn() to the process's exit, measured outside it. */
  wallMs: number;
  status: number;
}

/** Runs in the fresh process (ESM, no TypeScript loader): import, one request, report on fd 3. */
const childCode = `
import { writeSync } from 'node:fs';
const started = performance.now();
const { handler } = await import(process.env.BENCH_BUNDLE_URL);
const imported = performance.now();
const answer = await handler(JSON.parse(process.env.BENCH_EVENT), JSON.parse(process.env.BENCH_CONTEXT));
const answered = performance.now();
const body = JSON.parse(answer.body);
writeSync(3, JSON.stringify({
  importMs: imported - started,
  firstMs: answered - imported,
  sinceStartMs: answered,
  status: typeof body.access_token === 'string' ? answer.statusCode : -1,
}) + '\\n');
process.exit(0);
`;

function coldRun(env: NodeJS.ProcessEnv, nodeArgs: string[]): Promise<ColdRun> {
  return new Promise((resolve, reject) => {
    const spawned = performance.now();
    const child = track(
      spawn(process.execPath, [...nodeArgs, '--input-type=module', '-e', childCode], {
        cwd: repoRoot,
        env,
        // stdout (the handler's log lines) to /dev/null; fd 3 carries the result.
        stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
      }),
    );
    let stderr = '';
    let report = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    const channel = child.stdio[3];
    if (channel === null || channel === undefined || !('setEncoding' in channel)) {
      reject(new Error('no result channel to the cold-start process'));
      return;
    }
    channel.setEncoding('utf8');
    channel.on('data', (chunk: string) => {
      report += chunk;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      const wallMs = performance.now() - spawned;
      if (code !== 0 || report.trim() === '') {
        reject(new Error(`cold-start process exited with ${code}:\n${stderr.slice(-4000)}`));
        return;
      }
      const parsed = JSON.parse(report) as Omit<ColdRun, 'wallMs'>;
      resolve({ ...parsed, wallMs });
    });
  });
}

export async function runColdStart(): Promise<Figure[]> {
  const command = phaseCommand('cold');
  const outdir = await mkdtemp(join(tmpdir(), 'token-broker-bench-asset-'));
  try {
    print('cold start: bundling lambdas/entry/lambda-handler.ts with esbuild...');
    const bundle = join(outdir, 'index.mjs');
    // lib/lambda-bundle.ts: the options the stack's NodejsFunction bundles with, through esbuild's API.
    const built = await build({ ...esbuildOptions(repoRoot, lambdaBundle.entry, bundle), metafile: true });
    const code = await readFile(bundle);
    const map = await readFile(`${bundle}.map`);
    const zipped = deflateRawSync(code, { level: 9 }).length + deflateRawSync(map, { level: 9 }).length;
    const byPackage = new Map<string, number>();
    for (const [path, input] of Object.entries(
      built.metafile.outputs[Object.keys(built.metafile.outputs).find((o) => o.endsWith('index.mjs')) ?? '']?.inputs ??
        {},
    )) {
      const match = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path);
      const name = match?.[1] ?? 'token-broker (lambdas/)';
      byPackage.set(name, (byPackage.get(name) ?? 0) + input.bytesInOutput);
    }
    const largest = [...byPackage.entries()].sort((a, b) => b[1] - a[1]).slice(0, 6);

    print('cold start: fresh processes importing the bundle...');
    // The first cached request: the token must be in the table.
    const seeded = await newContainer().request(tokenEvent('cold'));
    if (seeded.status !== 200) throw new Error(`could not seed the cold client's token: ${seeded.error}`);
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      // What the stack sets (lib/broker-function.ts), with this bench's table and registry (the cold client only).
      [environmentVariables.tableName]: setup.tableName,
      [environmentVariables.sealingSecretArn]: process.env[environmentVariables.sealingSecretArn],
      [environmentVariables.clients]: JSON.stringify({ cold: setup.registry.cold }),
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'bench',
      AWS_SECRET_ACCESS_KEY: 'bench',
      AWS_ENDPOINT_URL_DYNAMODB: process.env.AWS_ENDPOINT_URL_DYNAMODB,
      AWS_ENDPOINT_URL_SECRETS_MANAGER: process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER,
      BENCH_BUNDLE_URL: pathToFileURL(bundle).href,
      BENCH_EVENT: JSON.stringify(tokenEvent('cold')),
      BENCH_CONTEXT: JSON.stringify({
        functionName: 'token-broker',
        functionVersion: '$LATEST',
        invokedFunctionArn: apiGatewayInvokedArn,
        memoryLimitInMB: '512',
        awsRequestId: 'cold-start',
        logGroupName: '/aws/lambda/token-broker',
        logStreamName: 'cold-start',
        callbackWaitsForEmptyEventLoop: true,
      }),
    };
    const runs = scaled(20, 5);
    const before = await tokenRequests('main');
    const results: ColdRun[] = [];
    await coldRun(env, []); // one unmeasured run: the file system cache holds the bundle, as Lambda's would
    for (let i = 0; i < runs; i++) results.push(await coldRun(env, []));
    let profile: Awaited<ReturnType<typeof summarizeColdStartProfile>> | undefined;
    if (setup.cpuProfDir !== undefined) {
      await coldRun(env, [
        '--cpu-prof',
        '--cpu-prof-interval=100',
        `--cpu-prof-dir=${setup.cpuProfDir}`,
        '--cpu-prof-name=cold-start.cpuprofile',
      ]);
      profile = await summarizeColdStartProfile(join(setup.cpuProfDir, 'cold-start.cpuprofile'));
    }
    const bySize = await coldStartByRegistrySize(env, outdir, runs);
    const calls = (await tokenRequests('main')) - before;
    const failed = results.filter((run) => run.status !== 200).length;
    const importMs = median(results.map((run) => run.importMs));
    const firstMs = median(results.map((run) => run.firstMs));
    const totalMs = median(results.map((run) => run.importMs + run.firstMs));
    const sinceStartMs = median(results.map((run) => run.sinceStartMs));
    const wallMs = median(results.map((run) => run.wallMs));
    const totals = results.map((run) => run.importMs + run.firstMs).sort((a, b) => a - b);

    const esbuildCommand = [
      `npx esbuild --bundle ${lambdaBundle.entry} --platform=node --format=${lambdaBundle.format}`,
      `--target=${lambdaBundle.target} --main-fields=${lambdaBundle.mainFields.join(',')} --minify --sourcemap`,
      '--sources-content=false --outfile=index.mjs',
      shellQuote(`--banner:js=${lambdaBundle.banner}`),
      ...Object.entries(lambdaBundle.aliases).map(([from, to]) => `--alias:${from}=${to}`),
    ].join(' ');
    return [
      {
        id: '5a',
        title: 'deployed asset: bundle size',
        command: esbuildCommand,
        details: [
          `index.mjs ${bytes(code.length)}, index.mjs.map ${bytes(map.length)}; deflated (≈ the asset zip) ${bytes(zipped)}`,
          `largest parts of index.mjs: ${largest.map(([name, size]) => `${name} ${bytes(size)}`).join(', ')}`,
          "options from lib/lambda-bundle.ts, which the stack's NodejsFunction bundles with",
        ],
        summary: `${bytes(code.length)} (${bytes(zipped)} deflated)`,
        data: {
          indexMjsBytes: code.length,
          sourceMapBytes: map.length,
          deflatedBytes: zipped,
          largestInputs: Object.fromEntries(largest),
          aliases: lambdaBundle.aliases,
        },
      },
      {
        id: '5b',
        title: `cold start: import the bundle + first cached answer, fresh process (median of ${runs})`,
        command: `node --input-type=module -e '<import index.mjs; await handler(event)>'  (${count(runs)} runs of ${command})`,
        details: [
          `import + first answer ${ms(totalMs)} (import ${ms(importMs)}, first answer ${ms(firstMs)}); ` +
            `range ${ms(totals[0] ?? Number.NaN)} – ${ms(totals[totals.length - 1] ?? Number.NaN)}`,
          `with Node's own start-up: ${ms(sinceStartMs)} to the first answer; whole process, spawn to exit: ${ms(wallMs)}`,
          `first answer = a DynamoDB hit (GetSecretValue + GetItem, SDK clients set up on first use); token-endpoint calls: ${calls}; failed: ${failed}` +
            '; X-Ray tracing is off outside Lambda',
          ...(profile === undefined
            ? ['where the time goes: run with --cpu-prof-dir <dir> for a CPU profile of one run']
            : [profile.text, `profile: ${join(setup.cpuProfDir ?? '', 'cold-start.cpuprofile')}`]),
        ],
        summary: `${ms(totalMs)} (import ${ms(importMs)})`,
        target: {
          text: `import + first cached answer < ${coldStartTargetMs} ms`,
          pass: totalMs < coldStartTargetMs && failed === 0,
        },
        data: {
          runs,
          importMs,
          firstAnswerMs: firstMs,
          importPlusFirstMs: totalMs,
          sinceProcessStartMs: sinceStartMs,
          processWallMs: wallMs,
          tokenEndpointCalls: calls,
          failed,
          ...(profile === undefined ? {} : { profileMs: profile.ms }),
          perRun: results.map((run) => ({
            importMs: Math.round(run.importMs * 10) / 10,
            firstMs: Math.round(run.firstMs * 10) / 10,
          })),
        },
      },
      bySize,
    ];
  } finally {
    await rm(outdir, { recursive: true, force: true });
  }
}

/** The registry sizes issue 11 asks about: one client, a team's, an organisation's. */
const registrySizes = [1, 50, 200] as const;

/**
 * 5c: cold start as the registry grows. The stack bundles the registry as clients.json beside index.mjs
 * (TOKEN_BROKER_CLIENTS_FILE); here each size gets such a file, the cold client plus synthetic ones shaped
 * like it, and the sizes take turns run by run so that drift on a shared machine falls on all of them alike.
 */
async function coldStartByRegistrySize(baseEnv: NodeJS.ProcessEnv, outdir: string, runs: number): Promise<Figure> {
  const files = new Map<number, string>();
  for (const size of registrySizes) {
    const registry: Record<string, unknown> = { cold: setup.registry.cold };
    for (let i = 1; i < size; i++) {
      registry[`scale-${String(i).padStart(3, '0')}`] = { ...setup.registry.cold, secretName: `bench/scale-${i}` };
    }
    const file = join(outdir, `clients-${size}.json`);
    await writeFile(file, JSON.stringify(registry));
    files.set(size, file);
  }
  const envFor = (size: number): NodeJS.ProcessEnv => {
    const env: NodeJS.ProcessEnv = { ...baseEnv, [environmentVariables.clientsFile]: files.get(size) };
    delete env[environmentVariables.clients];
    return env;
  };
  const totals = new Map<number, number[]>(registrySizes.map((size) => [size, []]));
  let failed = 0;
  for (const size of registrySizes) await coldRun(envFor(size), []);
  for (let i = 0; i < runs; i++) {
    for (const size of registrySizes) {
      const run = await coldRun(envFor(size), []);
      if (run.status !== 200) failed++;
      totals.get(size)?.push(run.importMs + run.firstMs);
    }
  }
  const medians = Object.fromEntries(registrySizes.map((size) => [size, median(totals.get(size) ?? [])]));
  // What the registry itself costs a cold start: reading and validating clients.json, as compose does once.
  const parseMs = Object.fromEntries(
    registrySizes.map((size) => {
      const file = files.get(size) ?? '';
      const samples: number[] = [];
      for (let i = 0; i < 200; i++) {
        const started = performance.now();
        parseClientRegistryJson(readFileSync(file, 'utf8'), file);
        samples.push(performance.now() - started);
      }
      return [size, median(samples)];
    }),
  );
  const bytesOf = Object.fromEntries(
    await Promise.all(registrySizes.map(async (size) => [size, (await readFile(files.get(size) ?? '')).length])),
  );
  const line = registrySizes
    .map(
      (size) =>
        `${count(size)} client${size === 1 ? '' : 's'} ${ms(medians[size] ?? Number.NaN)} (clients.json ${bytes(bytesOf[size] ?? 0)})`,
    )
    .join('; ');
  return {
    id: '5c',
    title: `cold start by registry size: import + first cached answer, registry from clients.json (median of ${runs} each)`,
    command: `${phaseCommand('cold')}  (sizes interleaved run by run)`,
    details: [
      line,
      `of which reading and validating clients.json (in process, median of 200): ${registrySizes
        .map((size) => `${count(size)}: ${ms(parseMs[size] ?? Number.NaN)}`)
        .join(', ')}`,
      `failed: ${failed}`,
    ],
    summary: line,
    data: { runs, medianMs: medians, registryParseMs: parseMs, clientsJsonBytes: bytesOf, failed },
  };
}
