/**
 * `npm run bench` — the benchmark of issue #5 (a benchmark, not a test: it measures and reports, it does
 * not fail on a missed target). Usage:
 *
 *   npx tsx test/bench/run-bench.ts [--quick] [--json <path>] [--only inproc,http,burst,steady,fleet,cold]
 *                                   [--cpu-prof-dir <dir>]
 *
 * This entry process generates a throw-away TLS CA and server certificate (as test/run-tests.ts does),
 * starts the local servers the integration tests use — dynalite with the token table, the Secrets Manager
 * stand-in, oidc-provider over TLS (one per token lifetime needed) — and then starts the measuring process
 * (test/bench/measure.ts) with NODE_EXTRA_CA_CERTS pointing at the CA, which Node reads only at start.
 * The measuring process plays the Lambda container; the servers stay here, as AWS and the identity
 * provider are elsewhere. Figures come back over IPC, are printed with the command that produced them,
 * their target and PASS/MISS, then summarized; --json writes them for docs/benchmarks.md.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { maxTokenRequestsPerHourLimit } from '../../lambdas/core/issuance-budget.js';
import { environmentVariables } from '../../lambdas/entry/environment.js';
import { createTokenTable, startDynalite } from '../../lambdas/local/dynalite.js';
import { type LocalOidcServer, startOidcServer } from '../../lambdas/local/oidc-server.js';
import { startSecretsManagerStandIn, storeSealingKey } from '../support/secrets-manager.js';
import { generateTlsMaterial, writeTlsMaterial } from '../support/tls-material.js';
import { stopChild } from './processes.js';
import {
  type BenchSetup,
  type Figure,
  isChildMessage,
  type OidcName,
  type ParentMessage,
  type Phase,
  phases,
  type RegistryEntry,
} from './protocol.js';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const measureScript = fileURLToPath(new URL('./measure.ts', import.meta.url));
const tableName = 'token-broker-bench';
const benchScopes = ['bench.read', 'bench.write'];
/** 160 scopes: 12,720 distinct pairs, one never-asked-for cache key per request of the miss run. */
const missScopes = Array.from({ length: 160 }, (_, i) => `miss.${String(i).padStart(3, '0')}`);

interface Options {
  quick: boolean;
  json: string | undefined;
  phases: Phase[];
  cpuProfDir: string | undefined;
}

const usage =
  'usage: npm run bench -- [--quick] [--json <path>] [--only <phases>] [--cpu-prof-dir <dir>]\n' +
  `  phases (comma-separated, default all): ${phases.join(', ')}\n` +
  '  --quick: small counts, a smoke run (under a minute)\n';

function options(): Options {
  let values: { quick?: boolean; json?: string; only?: string; 'cpu-prof-dir'?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      options: {
        quick: { type: 'boolean', default: false },
        json: { type: 'string' },
        only: { type: 'string' },
        'cpu-prof-dir': { type: 'string' },
        help: { type: 'boolean', default: false },
      },
      strict: true,
    }));
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n${usage}`);
    process.exit(2);
  }
  if (values.help === true) {
    process.stdout.write(usage);
    process.exit(0);
  }
  const selected = values.only === undefined ? [...phases] : values.only.split(',').map((p) => p.trim());
  const unknown = selected.filter((phase) => !(phases as readonly string[]).includes(phase));
  if (unknown.length > 0) {
    process.stderr.write(`--only: unknown phase ${unknown.join(', ')}\n${usage}`);
    process.exit(2);
  }
  return {
    quick: values.quick === true,
    json: values.json === undefined ? undefined : resolve(values.json),
    phases: phases.filter((phase) => selected.includes(phase)),
    cpuProfDir: values['cpu-prof-dir'] === undefined ? undefined : resolve(values['cpu-prof-dir']),
  };
}

/** How this run was started, so printed commands can be pasted back. */
function benchCommand(): string {
  return process.env.npm_lifecycle_event === 'bench' ? 'npm run bench --' : 'npx tsx test/bench/run-bench.ts';
}

function git(...args: string[]): string {
  const result = spawnSync('git', args, { cwd: repoRoot, encoding: 'utf8' });
  return result.status === 0 ? result.stdout.trim() : 'unknown';
}

const rule = '─'.repeat(100);

function printFigure(figure: Figure): void {
  const lines = [`\n${figure.id.padEnd(4)} ${figure.title}`, `     command: ${figure.command}`];
  for (const detail of figure.details) lines.push(`     ${detail}`);
  if (figure.target !== undefined) {
    lines.push(`     target: ${figure.target.text}  →  ${figure.target.pass ? 'PASS' : 'MISS'}`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

function printSummary(figures: Figure[]): void {
  const rows = figures.map((f) => [
    f.id,
    f.title,
    f.summary,
    f.target?.text ?? '—',
    f.target === undefined ? '' : f.target.pass ? 'PASS' : 'MISS',
  ]);
  const header = ['#', 'figure', 'measured', 'target', ''];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  process.stdout.write(`\n${rule}\nSummary\n${line(header)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n`);
  for (const row of rows) process.stdout.write(`${line(row)}\n`);
  const targets = figures.filter((f) => f.target !== undefined);
  const missed = targets.filter((f) => f.target?.pass === false).length;
  process.stdout.write(`${targets.length - missed} of ${targets.length} targets met\n`);
}

/** The measuring process's stderr: broker warnings are worth seeing, but once each, not once per request. */
function relayStderr(child: ChildProcess): () => void {
  const seen = new Map<string, number>();
  let partial = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    partial += chunk;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (line.trim() === '') continue;
      let key = line;
      try {
        const parsed = JSON.parse(line) as { level?: unknown; message?: unknown };
        if (typeof parsed.message === 'string') key = `${String(parsed.level)} ${parsed.message}`;
      } catch {
        // not a structured log line: shown as is
      }
      const times = (seen.get(key) ?? 0) + 1;
      seen.set(key, times);
      if (times === 1) process.stderr.write(`[measuring process] ${line}\n`);
    }
  });
  return () => {
    if (partial.trim() !== '') process.stderr.write(`[measuring process] ${partial}\n`);
    for (const [key, times] of seen) {
      if (times > 1) process.stderr.write(`[measuring process] (${times}×) ${key.slice(0, 200)}\n`);
    }
  };
}

async function main(): Promise<number> {
  const opts = options();
  const started = performance.now();
  const loadAtStart = loadavg();
  process.stdout.write(
    `token-broker benchmark${opts.quick ? ' (--quick: small counts, a smoke run)' : ''}\n` +
      `node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, commit ${git('rev-parse', '--short', 'HEAD')}` +
      `${git('status', '--porcelain', '--untracked-files=no') === '' ? '' : ' (with uncommitted changes)'}, ${new Date().toISOString()}\n` +
      `phases: ${opts.phases.join(', ')}; machine load (1/5/15-minute averages): ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}\n`,
  );

  const tlsDir = await mkdtemp(join(tmpdir(), 'token-broker-bench-tls-'));
  const closers: (() => Promise<void>)[] = [];
  const figures: Figure[] = [];
  try {
    const material = await generateTlsMaterial();
    await writeTlsMaterial(tlsDir, material);
    const caPath = join(tlsDir, 'ca.pem');

    // Servers, in this process.
    const dynamo = await startDynalite();
    closers.push(() => dynamo.close());
    await createTokenTable(dynamo.endpoint, tableName);
    const secretsManager = await startSecretsManagerStandIn();
    closers.push(() => secretsManager.close());
    const credentials = {
      clientId: 'bench-client',
      clientSecret: randomBytes(24).toString('base64url'),
      secretName: 'token-broker/bench',
    };
    secretsManager.putSecret(
      credentials.secretName,
      JSON.stringify({ client_id: credentials.clientId, client_secret: credentials.clientSecret }),
    );
    const sealing = storeSealingKey(secretsManager);
    let serverErrors = 0;
    const oidcServer = async (ttlSeconds: number): Promise<LocalOidcServer> => {
      const server = await startOidcServer({
        clients: [
          {
            clientId: credentials.clientId,
            clientSecret: credentials.clientSecret,
            authMethod: 'client_secret_post',
            scopes: [...benchScopes, ...missScopes],
          },
        ],
        tls: { key: material.serverKeyPem, cert: material.serverCertPem },
        accessTokenTtlSeconds: ttlSeconds,
        onServerError: (error) => {
          serverErrors += 1;
          if (serverErrors <= 5) process.stderr.write(`[oidc-provider] ${error.stack ?? error.message}\n`);
        },
      });
      closers.push(() => server.close());
      return server;
    };
    const oidc: Record<OidcName, LocalOidcServer> = {
      main: await oidcServer(3600),
      short: await oidcServer(70),
      long: await oidcServer(600),
      fleet: await oidcServer(300),
    };

    // The bench client's credentials under one secret per registry client, as the registry requires.
    let entries = 0;
    const secretOfEntry = () => {
      const name = entries++ === 0 ? credentials.secretName : `${credentials.secretName}-${entries}`;
      if (entries > 1) {
        secretsManager.putSecret(
          name,
          JSON.stringify({ client_id: credentials.clientId, client_secret: credentials.clientSecret }),
        );
      }
      return name;
    };
    const entry = (server: LocalOidcServer, scopes: string[], defaultScope?: string): RegistryEntry => ({
      wellKnownUrl: server.wellKnownUrl,
      secretName: secretOfEntry(),
      scopes,
      ...(defaultScope === undefined ? {} : { defaultScope }),
      authMethod: 'client_secret_post',
      // The provider names its token endpoint on another host than its issuer, as Cognito does.
      tokenEndpointHosts: [new URL(server.tokenEndpoint).host],
      // The miss run makes 10,000 calls in a minute on purpose, far past the default hourly budget.
      maxTokenRequestsPerHour: maxTokenRequestsPerHourLimit,
    });
    const registry: Record<string, RegistryEntry> = {
      bench: entry(oidc.main, benchScopes, 'bench.read'),
      miss: entry(oidc.main, missScopes, missScopes[0]),
      burst: entry(oidc.main, benchScopes, 'bench.read'),
      cold: entry(oidc.main, benchScopes, 'bench.read'),
      'steady-short': entry(oidc.short, benchScopes, 'bench.read'),
      'steady-long': entry(oidc.long, benchScopes, 'bench.read'),
      'fleet-defaults': entry(oidc.fleet, benchScopes, 'bench.read'),
      'fleet-tuned': entry(oidc.fleet, benchScopes, 'bench.read'),
      'fleet-outage-early': entry(oidc.fleet, benchScopes, 'bench.read'),
      'fleet-outage-late': entry(oidc.fleet, benchScopes, 'bench.read'),
    };
    const setup: BenchSetup = {
      quick: opts.quick,
      phases: opts.phases,
      benchCommand: benchCommand(),
      caPath,
      tableName,
      oidc: {
        main: endpointsOf(oidc.main, 3600),
        short: endpointsOf(oidc.short, 70),
        long: endpointsOf(oidc.long, 600),
        fleet: endpointsOf(oidc.fleet, 300),
      },
      credentials,
      missScopes,
      registry,
      cpuProfDir: opts.cpuProfDir,
    };
    if (opts.cpuProfDir !== undefined) {
      await mkdir(opts.cpuProfDir, { recursive: true });
      process.stdout.write(
        `CPU profiles go to ${opts.cpuProfDir}: measure.cpuprofile (the measuring process, so its figures carry ` +
          'profiler overhead) and cold-start.cpuprofile (one extra, unmeasured cold start)\n',
      );
    }

    const env: NodeJS.ProcessEnv = {
      ...process.env,
      NODE_EXTRA_CA_CERTS: caPath,
      TEST_TLS_DIR: tlsDir,
      AWS_ACCESS_KEY_ID: 'bench',
      AWS_SECRET_ACCESS_KEY: 'bench',
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
      AWS_ENDPOINT_URL_SECRETS_MANAGER: secretsManager.endpoint,
      [environmentVariables.tableName]: tableName,
      ...sealing.env,
      [environmentVariables.clients]: JSON.stringify(registry),
      BENCH_SETUP: JSON.stringify(setup),
    };
    // Nothing from a developer's real AWS setup may pair with the dummy keys or redirect the SDK.
    for (const name of ['AWS_SESSION_TOKEN', 'AWS_PROFILE', 'AWS_DEFAULT_PROFILE', 'AWS_DEFAULT_REGION']) {
      delete env[name];
    }

    const profile =
      opts.cpuProfDir === undefined
        ? []
        : ['--cpu-prof', `--cpu-prof-dir=${opts.cpuProfDir}`, '--cpu-prof-name=measure.cpuprofile'];
    // --expose-gc: the fresh-container figure drops earlier containers' garbage between requests (untimed).
    const child = spawn(process.execPath, [...profile, '--expose-gc', '--import', 'tsx', measureScript], {
      cwd: repoRoot,
      env,
      // stdout on /dev/null: the broker's log lines (one per request) are written as in Lambda, and dropped.
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    const flushStderr = relayStderr(child);
    const forward = () => void stopChild(child);
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    const limitMs = opts.quick ? 5 * 60_000 : 20 * 60_000;
    const watchdog = setTimeout(() => {
      process.stderr.write(`the measuring process ran longer than ${limitMs / 60_000} minutes: stopping it\n`);
      void stopChild(child);
    }, limitMs);

    let finished = false;
    child.on('message', (message: unknown) => {
      if (!isChildMessage(message)) return;
      if (message.type === 'line') process.stdout.write(`  ${message.text}\n`);
      else if (message.type === 'figure') {
        figures.push(message.figure);
        printFigure(message.figure);
      } else if (message.type === 'count') {
        const reply: ParentMessage = { type: 'count', id: message.id, value: oidc[message.oidc].tokenRequests() };
        child.send(reply);
      } else if (message.type === 'done') finished = true;
    });
    const code = await new Promise<number>((resolveExit) => {
      child.once('close', (exitCode, signal) => resolveExit(exitCode ?? (signal === null ? 1 : 128)));
    });
    clearTimeout(watchdog);
    process.off('SIGINT', forward);
    process.off('SIGTERM', forward);
    flushStderr();

    printSummary(figures);
    if (serverErrors > 0) process.stdout.write(`oidc-provider answered ${serverErrors} requests with a 500\n`);
    const totalS = (performance.now() - started) / 1000;
    process.stdout.write(
      `total ${totalS.toFixed(1)} s; machine load (1/5/15-minute averages) now: ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}\n`,
    );
    if (opts.json !== undefined) {
      const results = {
        generatedAt: new Date().toISOString(),
        command: `${benchCommand()} ${process.argv.slice(2).join(' ')}`.trim(),
        quick: opts.quick,
        node: process.version,
        cpus: cpus().length,
        cpuModel: cpus()[0]?.model ?? 'unknown',
        commit: git('rev-parse', 'HEAD'),
        totalSeconds: Math.round(totalS * 10) / 10,
        loadAverageAtStart: loadAtStart,
        loadAverageAtEnd: loadavg(),
        complete: finished && code === 0,
        figures,
      };
      await mkdir(dirname(opts.json), { recursive: true });
      await writeFile(opts.json, `${JSON.stringify(results, null, 2)}\n`);
      process.stdout.write(`results written to ${opts.json}\n`);
    }
    if (!finished || code !== 0) {
      process.stderr.write(`the measuring process failed (exit ${code}): the results above are incomplete\n`);
      return 1;
    }
    return 0;
  } finally {
    for (const close of closers.reverse()) await close().catch(() => {});
    await rm(tlsDir, { recursive: true, force: true });
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);

function endpointsOf(server: LocalOidcServer, ttlSeconds: number) {
  return { issuer: server.issuer, wellKnownUrl: server.wellKnownUrl, tokenEndpoint: server.tokenEndpoint, ttlSeconds };
}
