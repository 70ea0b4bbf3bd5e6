/**
 * The local dev server (`npm start`) and other scripts of the repository run as child processes, the way a
 * developer runs them, with what they write captured for assertions.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';

export const devServerPath = fileURLToPath(new URL('../../lambdas/local/dev-server.ts', import.meta.url));
export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

export interface DevServerProcess {
  /** http://127.0.0.1:<port> */
  baseUrl: string;
  port: number;
  /** stdout (the broker's log lines) and stderr, interleaved as they arrived. */
  output(): string;
  /** Waits until the output matches: log lines arrive on a pipe, possibly after the HTTP answer. */
  outputMatching(pattern: RegExp): Promise<void>;
  close(): Promise<void>;
}

/** Starts the dev server on a free port (PORT=0) and resolves once it says where it listens. */
export async function startDevServerProcess(env: NodeJS.ProcessEnv = {}): Promise<DevServerProcess> {
  let output = '';
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', devServerPath], {
    env: { ...process.env, PORT: '0', ...env },
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
  });
  return {
    baseUrl,
    port: Number(new URL(baseUrl).port),
    output: () => output,
    async outputMatching(pattern: RegExp) {
      for (let waited = 0; !pattern.test(output) && waited < 5_000; waited += 20) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.match(output, pattern);
    },
    async close() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await once(child, 'exit');
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

export interface RawAnswer {
  status: number;
  body: string;
}

/**
 * Sends a request exactly as written, header lines included (fetch and node:http merge or refuse some, such
 * as a second Content-Type or a foreign Host). HTTP/1.0, so the answer is not chunked and ends with the connection.
 */
export async function rawRequest(
  port: number,
  request: { method: string; path: string; headers: [string, string][]; body?: string },
): Promise<RawAnswer> {
  const body = request.body ?? '';
  const head = [
    `${request.method} ${request.path} HTTP/1.0`,
    ...request.headers.map(([name, value]) => `${name}: ${value}`),
    `Content-Length: ${Buffer.byteLength(body)}`,
  ];
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.end(`${head.join('\r\n')}\r\n\r\n${body}`);
  const chunks: Buffer[] = [];
  for await (const chunk of socket) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1]);
  assert.ok(Number.isInteger(status), 'the server answered with an HTTP status line');
  return { status, body: text.slice(text.indexOf('\r\n\r\n') + 4) };
}
