/**
 * The local dev server (`npm start`) and other scripts of the repository run as child processes, the way a
 * developer runs them, with what they write captured for assertions.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Sha256 } from '@aws-crypto/sha256-js';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';

export const devServerPath = fileURLToPath(new URL('../../lambdas/local/dev-server.ts', import.meta.url));
export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

/** The key pair the dev server made at start, as it writes it to TOKEN_BROKER_LOCAL_CREDENTIALS_FILE. */
export interface LocalCaller {
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  /** The variables the server tells its user to export: keys, region, AWS_ENDPOINT_URL_LAMBDA. */
  environment: Record<string, string>;
}

export interface DevServerProcess {
  /** http://127.0.0.1:<port> */
  baseUrl: string;
  port: number;
  /** The start's caller credentials; undefined when started with --no-auth. */
  caller: LocalCaller | undefined;
  /** What the server wrote to TOKEN_BROKER_LOCAL_CREDENTIALS_FILE, parsed. */
  credentialsDocument: Record<string, unknown>;
  /** fetch(baseUrl + path), SigV4-signed for execute-api with the start's credentials (unsigned with --no-auth). */
  fetch(path: string, init?: { method?: string; headers?: Record<string, string>; body?: string }): Promise<Response>;
  /** stdout (the broker's log lines) and stderr, interleaved as they arrived. */
  output(): string;
  /** Waits until the output matches: log lines arrive on a pipe, possibly after the HTTP answer. */
  outputMatching(pattern: RegExp): Promise<void>;
  close(): Promise<void>;
}

/** fetch, SigV4-signed for the service with the credentials, as any AWS SDK would send it. */
export async function signedFetch(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string },
  signing: { accessKeyId: string; secretAccessKey: string; region: string; service?: string },
): Promise<Response> {
  const target = new URL(url);
  const method = init.method ?? 'GET';
  const signer = new SignatureV4({
    service: signing.service ?? 'execute-api',
    region: signing.region,
    credentials: { accessKeyId: signing.accessKeyId, secretAccessKey: signing.secretAccessKey },
    sha256: Sha256,
  });
  const signed = await signer.sign(
    new HttpRequest({
      method,
      protocol: target.protocol,
      hostname: target.hostname,
      ...(target.port === '' ? {} : { port: Number(target.port) }),
      path: target.pathname,
      query: Object.fromEntries(target.searchParams),
      headers: { host: target.host, ...init.headers },
      ...(init.body === undefined ? {} : { body: init.body }),
    }),
  );
  const { host: _host, ...headers } = signed.headers;
  return fetch(target, { method, headers, body: init.body ?? null });
}

/**
 * Starts the dev server on a free port (PORT=0) and resolves once it says where it listens, with the caller
 * credentials it wrote to TOKEN_BROKER_LOCAL_CREDENTIALS_FILE (a file of its own unless env names one).
 */
export async function startDevServerProcess(
  env: NodeJS.ProcessEnv = {},
  args: string[] = [],
): Promise<DevServerProcess> {
  let output = '';
  const workDir = await mkdtemp(join(tmpdir(), 'dev-server-process-'));
  const credentialsFile = env.TOKEN_BROKER_LOCAL_CREDENTIALS_FILE ?? join(workDir, 'credentials.json');
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', devServerPath, ...args], {
    env: { ...process.env, PORT: '0', TOKEN_BROKER_LOCAL_CREDENTIALS_FILE: credentialsFile, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (chunk) => {
    output += chunk;
  });
  const baseUrl = await new Promise<string>((resolve, reject) => {
    child.stderr?.on('data', (chunk) => {
      output += chunk;
      const match = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
      if (match?.[1]) resolve(match[1]);
    });
    child.once('exit', (code) => reject(new Error(`dev server exited with ${code}: ${output}`)));
  }).catch(async (error: unknown) => {
    await rm(workDir, { recursive: true, force: true });
    throw error;
  });
  const credentialsDocument = JSON.parse(await readFile(credentialsFile, 'utf8')) as Record<string, unknown>;
  const caller = (credentialsDocument.caller ?? undefined) as LocalCaller | undefined;
  return {
    baseUrl,
    port: Number(new URL(baseUrl).port),
    caller,
    credentialsDocument,
    fetch: (path, init = {}) =>
      caller === undefined
        ? fetch(`${baseUrl}${path}`, {
            method: init.method ?? 'GET',
            headers: init.headers ?? {},
            body: init.body ?? null,
          })
        : signedFetch(`${baseUrl}${path}`, init, caller),
    output: () => output,
    async outputMatching(pattern: RegExp) {
      for (let waited = 0; !pattern.test(output) && waited < 5_000; waited += 20) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.match(output, pattern);
    },
    async close() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        await exited;
      }
      await rm(workDir, { recursive: true, force: true });
    },
  };
}

export interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a TypeScript entry point of the repository under tsx to its end. */
export async function runScript(script: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Finished> {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // A script that should have ended (a server that should have refused to start) is not left running.
    timeout: 120_000,
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => {
    stdout += chunk;
  });
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr };
}
