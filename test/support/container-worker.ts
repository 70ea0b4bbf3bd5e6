/**
 * One Lambda container in a process of its own: `node --import tsx test/support/container-worker.ts
 * --client <name> --requests <n> [--scope <scope>] [--caller <iam arn>]` (test/support/containers.ts runs it).
 *
 * 1. Builds the broker from `process.env` exactly as lambdas/entry/lambda-handler.ts does
 *    (`createBrokerFromEnvironment` + `createHandler` with a Powertools Logger), so the environment must carry
 *    what lambdas/entry/environment.ts names and the function requires (the table, the registry, the sealing
 *    secret), the AWS endpoint variables and (dummy) credentials: test/support/local-parts.ts's `env`. The only
 *    addition is an observer on `broker.getToken` that notes each request's cache outcome, which the HTTP
 *    answer does not carry.
 * 2. Reports that it is ready (an IPC message `{ type: 'ready' }` when spawned with an IPC channel, and a line
 *    on stderr), then waits for a start signal: a line on stdin. Several workers released together race.
 * 3. Fires `--requests` concurrent API Gateway HTTP events for the client (and scope) at the handler.
 * 4. Prints ONE JSON line on stdout, a `ContainerResult`, and exits. Everything else, the broker's logs
 *    included, goes to stderr.
 *
 * Import only its types from elsewhere (`import type`): loading the module runs the worker.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { Logger } from '@aws-lambda-powertools/logger';
import type { APIGatewayProxyResult } from 'aws-lambda';
import { tokenPath } from '../../lambdas/contract.js';
import { createBrokerFromEnvironment } from '../../lambdas/entry/compose.js';
import { createHandler } from '../../lambdas/entry/create-handler.js';
import { apiGatewayEvent } from '../../lambdas/local/api-gateway-event.js';
import { apiGatewayContext } from './lambda-context.js';

/** What one request of a worker came back with. */
export interface ContainerRequestResult {
  status: number;
  /** The access token of a 200 answer. */
  accessToken?: string;
  /** The OAuth error code of a refusal. */
  error?: string;
  /** Where the broker says the token came from (`memory`, `table`, `fetched`, ...); absent when it failed. */
  cache?: string;
}

/** The JSON line a worker prints on stdout. */
export interface ContainerResult {
  pid: number;
  /** Per request, in the order the requests were fired. */
  requests: ContainerRequestResult[];
  /** Status code → number of answers. */
  statuses: Record<string, number>;
  /** The distinct access tokens received, in order of first appearance. */
  tokens: string[];
  /** Cache outcome → number of successful answers. */
  cache: Record<string, number>;
  /** From the start signal to the last answer. */
  elapsedMs: number;
}

const readyMessage = 'container-worker: ready';

const defaultCallerArn = 'arn:aws:iam::123456789012:role/container-worker';

// stdout carries the result line only: every other write (Powertools logs, console) goes to stderr.
const stdoutWrite = process.stdout.write.bind(process.stdout);
process.stdout.write = process.stderr.write.bind(process.stderr) as typeof process.stdout.write;

function options(): { client: string; requests: number; scope: string | undefined; caller: string } {
  const { values } = parseArgs({
    options: {
      client: { type: 'string' },
      requests: { type: 'string', default: '1' },
      scope: { type: 'string' },
      caller: { type: 'string', default: defaultCallerArn },
    },
    strict: true,
  });
  const requests = Number(values.requests);
  if (values.client === undefined || values.client === '') throw new Error('--client is required');
  if (!Number.isInteger(requests) || requests < 1) throw new Error('--requests must be a positive whole number');
  return { client: values.client, requests, scope: values.scope, caller: values.caller };
}

/** Resolves at the first line on stdin (or when stdin ends: a parent that went away must not leave us hanging). */
function startSignal(): Promise<void> {
  return new Promise((resolve) => {
    const lines = createInterface({ input: process.stdin });
    const done = () => {
      lines.close();
      resolve();
    };
    lines.once('line', done);
    lines.once('close', done);
  });
}

function countBy(values: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const value of values) counts[value] = (counts[value] ?? 0) + 1;
  return counts;
}

async function main(): Promise<void> {
  const { client, requests, scope, caller } = options();

  const logger = new Logger({ serviceName: 'token-broker' });
  const broker = createBrokerFromEnvironment(process.env, { logger });
  const requestIndex = new AsyncLocalStorage<number>();
  const outcomes = new Map<number, string>();
  const getToken = broker.getToken.bind(broker);
  broker.getToken = async (request) => {
    const result = await getToken(request);
    const index = requestIndex.getStore();
    if (index !== undefined) outcomes.set(index, String(result.cache));
    return result;
  };
  const handler = createHandler(broker, logger);

  process.send?.({ type: 'ready' });
  process.stderr.write(`${readyMessage}\n`);
  await startSignal();

  const started = performance.now();
  const answers = await Promise.all(
    Array.from({ length: requests }, (_, index) =>
      requestIndex.run(index, async (): Promise<ContainerRequestResult> => {
        const event = apiGatewayEvent({
          method: 'POST',
          path: tokenPath(encodeURIComponent(client)),
          headers: { 'content-type': 'application/json' },
          body: scope === undefined ? null : JSON.stringify({ scope }),
          callerArn: caller,
        });
        const answer = (await handler(event, apiGatewayContext(`container-${process.pid}`))) as APIGatewayProxyResult;
        const body = JSON.parse(answer.body) as Record<string, unknown>;
        const cache = outcomes.get(index);
        return {
          status: answer.statusCode,
          ...(typeof body.access_token === 'string' ? { accessToken: body.access_token } : {}),
          ...(typeof body.error === 'string' ? { error: body.error } : {}),
          ...(cache === undefined ? {} : { cache }),
        };
      }),
    ),
  );
  const elapsedMs = Math.round(performance.now() - started);

  const result: ContainerResult = {
    pid: process.pid,
    requests: answers,
    statuses: countBy(answers.map((answer) => String(answer.status))),
    tokens: [...new Set(answers.flatMap((answer) => (answer.accessToken === undefined ? [] : [answer.accessToken])))],
    cache: countBy(answers.flatMap((answer) => (answer.cache === undefined ? [] : [answer.cache]))),
    elapsedMs,
  };
  // The SDK clients keep connections open: exit once the line is out rather than wait for them.
  stdoutWrite(`${JSON.stringify(result)}\n`, () => process.exit(0));
}

main().catch((error: unknown) => {
  process.stderr.write(`container-worker failed: ${error instanceof Error ? (error.stack ?? error.message) : error}\n`);
  process.exit(1);
});
