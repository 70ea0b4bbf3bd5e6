/**
 * Several Lambda containers at once, each a process of its own (test/support/container-worker.ts) with its own
 * memory, SDK clients and single flight, sharing only what real containers share: the table, Secrets Manager
 * and the identity provider.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ContainerResult } from './container-worker.js';

export type { ContainerRequestResult, ContainerResult } from './container-worker.js';

export interface RunContainersOptions {
  /** Number of worker processes. */
  count: number;
  /** Concurrent requests each worker fires once released. */
  requestsEach: number;
  /** The client name in the request path. */
  client: string;
  /** The scope in the request body; absent: no body, the client's default scope. */
  scope?: string;
  /** The caller's IAM ARN in the API Gateway event. */
  callerArn?: string;
  /**
   * Added to this process's environment (which carries NODE_EXTRA_CA_CERTS, TEST_TLS_DIR and the dummy AWS
   * credentials from test/run-tests.ts): test/support/local-parts.ts's `env` (the endpoint variables, the table,
   * the sealing secret, the registry). An `undefined` value removes a variable.
   */
  env: Record<string, string | undefined>;
  /** For the whole run, start-up included; default 60 s. The workers are killed when it runs out. */
  timeoutMs?: number;
}

/** A worker's result, with what it wrote on stderr (its logs). */
export interface ContainerRun extends ContainerResult {
  stderr: string;
}

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const workerScript = fileURLToPath(new URL('./container-worker.ts', import.meta.url));

interface Worker {
  child: ChildProcess;
  stderr(): string;
  ready: Promise<void>;
  result: Promise<ContainerRun>;
}

function startWorker(index: number, options: RunContainersOptions): Worker {
  const args = [
    '--import',
    'tsx',
    workerScript,
    '--client',
    options.client,
    '--requests',
    String(options.requestsEach),
  ];
  if (options.scope !== undefined) args.push('--scope', options.scope);
  if (options.callerArn !== undefined) args.push('--caller', options.callerArn);
  const env: NodeJS.ProcessEnv = { ...process.env, ...options.env };
  // Not a node:test child itself, whatever this process is.
  delete env.NODE_TEST_CONTEXT;
  for (const [name, value] of Object.entries(options.env)) if (value === undefined) delete env[name];

  const child = spawn(process.execPath, args, { cwd: repoRoot, env, stdio: ['pipe', 'pipe', 'pipe', 'ipc'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const failure = (what: string) =>
    new Error(`container worker #${index} (pid ${child.pid}) ${what}; stderr:\n${stderr}`);

  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    // 'close': the exit code and all of stdout and stderr.
    child.once('close', (code, signal) => resolve(code ?? (signal === null ? null : -1)));
  });
  const ready = new Promise<void>((resolve, reject) => {
    child.on('message', (message: unknown) => {
      if (typeof message === 'object' && message !== null && (message as { type?: unknown }).type === 'ready') {
        resolve();
      }
    });
    exited.then(
      (code) => reject(failure(`exited with ${code} before it was ready`)),
      (error: unknown) => reject(failure(`could not be started (${String(error)})`)),
    );
  });
  const result = exited.then((code) => {
    if (code !== 0) throw failure(`exited with ${code}`);
    const lines = stdout.split('\n').filter((line) => line.trim() !== '');
    if (lines.length !== 1) throw failure(`printed ${lines.length} lines on stdout instead of one`);
    return { ...(JSON.parse(lines[0] as string) as ContainerResult), stderr };
  });
  // Observed through Promise.all below; without these, a failure before that point would be unhandled.
  ready.catch(() => {});
  result.catch(() => {});
  return { child, stderr: () => stderr, ready, result };
}

/**
 * Spawns `count` workers, waits until every one has built its broker, releases them all at once (a line on
 * each stdin) and resolves with their results in worker order. Rejects, with the failing worker's stderr,
 * if any worker fails or the run takes longer than `timeoutMs`; the other workers are then killed.
 */
export async function runContainers(options: RunContainersOptions): Promise<ContainerRun[]> {
  if (!Number.isInteger(options.count) || options.count < 1) throw new RangeError('count must be a positive integer');
  const workers = Array.from({ length: options.count }, (_, index) => startWorker(index, options));
  const kill = () => {
    for (const { child } of workers) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  const timeoutMs = options.timeoutMs ?? 60_000;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const logs = workers.map(
        (worker, index) => `--- worker #${index} stderr (tail):\n${worker.stderr().slice(-4000)}`,
      );
      reject(new Error(`runContainers: the workers did not finish within ${timeoutMs} ms\n${logs.join('\n')}`));
    }, timeoutMs);
  });
  try {
    await Promise.race([Promise.all(workers.map((worker) => worker.ready)), timeout]);
    for (const { child } of workers) child.stdin?.end('start\n');
    return await Promise.race([Promise.all(workers.map((worker) => worker.result)), timeout]);
  } catch (error) {
    kill();
    throw error;
  } finally {
    clearTimeout(timer);
    for (const { child } of workers) if (child.connected) child.disconnect();
  }
}
