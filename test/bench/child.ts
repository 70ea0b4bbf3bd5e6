/**
 * The measuring process's side of the bench: its setup, its channel to the entry process, and the
 * request shapes it sends. Only measure.ts and the phase modules import this.
 */
import { randomBytes } from 'node:crypto';
import { availableParallelism, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { APIGatewayProxyEvent, Context } from 'aws-lambda';
import { apiGatewayAliasName } from '../../lambdas/entry/invoke.js';
import { apiGatewayEvent } from '../../lambdas/local/api-gateway-event.js';
import {
  type BenchSetup,
  type ChildMessage,
  type Figure,
  isParentMessage,
  type OidcName,
  type Phase,
} from './protocol.js';

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
export const callerArn = 'arn:aws:iam::123456789012:role/bench-caller';
/** The function as API Gateway invokes it: through its own alias, the only one that serves HTTP events. */
export const apiGatewayInvokedArn = `arn:aws:lambda:us-east-1:123456789012:function:token-broker:${apiGatewayAliasName}`;

function readSetup(): BenchSetup {
  const raw = process.env.BENCH_SETUP;
  if (raw === undefined || process.send === undefined) {
    throw new Error('test/bench/measure.ts is started by test/bench/run-bench.ts (npm run bench), not directly');
  }
  return JSON.parse(raw) as BenchSetup;
}

export const setup = readSetup();

function send(message: ChildMessage): void {
  process.send?.(message);
}

export function print(text = ''): void {
  send({ type: 'line', text });
}

/** Reports a figure, with the machine's load when it was taken: other work on the machine skews the numbers. */
export function emit(figure: Figure): void {
  const load = Math.round((loadavg()[0] ?? 0) * 100) / 100;
  send({
    type: 'figure',
    figure: {
      ...figure,
      details: [
        ...figure.details,
        `machine load (1-minute average) when done: ${load} on ${availableParallelism()} cores`,
      ],
      data: { ...figure.data, loadAverage1m: load },
    },
  });
}

/** Resolves once 'done' (and so every message before it) has been handed to the channel. */
export function done(): Promise<void> {
  return new Promise((resolve, reject) => {
    const message: ChildMessage = { type: 'done' };
    process.send?.(message, undefined, {}, (error: Error | null) => (error === null ? resolve() : reject(error)));
  });
}

/** The command line that reruns one phase of the bench. */
export function phaseCommand(phase: Phase): string {
  return `${setup.benchCommand} --only ${phase}${setup.quick ? ' --quick' : ''}`;
}

let nextRequestId = 0;
const pendingCounts = new Map<number, (value: number) => void>();
process.on('message', (message: unknown) => {
  if (!isParentMessage(message)) return;
  pendingCounts.get(message.id)?.(message.value);
  pendingCounts.delete(message.id);
});

/** POST requests that have reached this provider's token endpoint so far (counted by the entry process). */
export function tokenRequests(oidc: OidcName): Promise<number> {
  const id = nextRequestId++;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      pendingCounts.delete(id);
      reject(new Error(`no answer from the entry process to count request ${id}`));
    }, 10_000);
    pendingCounts.set(id, (value) => {
      clearTimeout(timer);
      resolve(value);
    });
    send({ type: 'count', id, oidc });
  });
}

export function lambdaContext(): Context {
  return {
    functionName: 'token-broker',
    functionVersion: '$LATEST',
    invokedFunctionArn: apiGatewayInvokedArn,
    memoryLimitInMB: '512',
    awsRequestId: randomBytes(8).toString('hex'),
    logGroupName: '/aws/lambda/token-broker',
    logStreamName: 'bench',
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => 15_000,
    done: () => {},
    fail: () => {},
    succeed: () => {},
  };
}

/** POST /clients/{client}/token as API Gateway hands it to the function. */
export function tokenEvent(client: string, scope?: string): APIGatewayProxyEvent {
  return apiGatewayEvent({
    method: 'POST',
    path: `/clients/${encodeURIComponent(client)}/token`,
    headers: { 'content-type': 'application/json' },
    body: scope === undefined ? null : JSON.stringify({ scope }),
    callerArn,
  });
}

/** Bounded loops: stop at `count` iterations or when `deadline` (performance.now()) has passed. */
export function pastDeadline(deadline: number): boolean {
  return performance.now() > deadline;
}

export function scaled(full: number, quick: number): number {
  return setup.quick ? quick : full;
}
