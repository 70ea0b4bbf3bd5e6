/**
 * One Lambda container in this process, wired as lambdas/entry/lambda-handler.ts wires its one (Logger,
 * Metrics, Tracer, createBrokerFromEnvironment, createHandler), with the broker's answers observed.
 *
 * Fresh containers for per-request figures share the SDK clients (and so their connections): compose.ts
 * hands each SDK client it creates to `tracer.captureAWSv3Client` and uses what comes back, so the tracer
 * given here returns the shared clients instead. The clients compose.ts creates are then dropped unused.
 * Everything else is per container: memory tier, secret cache (unless `secrets` is given), discovery
 * cache of the token endpoint, Logger, Metrics (cold-start metric included).
 *
 * Each request also records the calls it made, to say where its time went: AWS SDK calls through a
 * middleware on the shared clients, and HTTP requests of Node's fetch (discovery, token endpoint) through
 * undici's diagnostics channels.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { subscribe } from 'node:diagnostics_channel';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { InitializeMiddleware } from '@smithy/types';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { PowertoolsBrokerMetrics } from '../../lambdas/adapters/observability.js';
import { metricsNamespace } from '../../lambdas/contract.js';
import type { CacheOutcome, TokenBroker } from '../../lambdas/core/broker.js';
import type { Clock, SecretSource } from '../../lambdas/core/ports.js';
import { createBrokerFromEnvironment } from '../../lambdas/entry/compose.js';
import { createHandler } from '../../lambdas/entry/create-handler.js';
import { lambdaContext } from './child.js';

const serviceName = 'token-broker';

/** A call made while serving one request, in performance.now() time. */
export interface CallRecord {
  name: string;
  start: number;
  end: number;
}

interface Probe {
  outcome?: CacheOutcome;
  /** How long broker.getToken itself took, inside the handler. */
  brokerMs?: number;
  calls: CallRecord[];
}

const probes = new AsyncLocalStorage<Probe>();

function callTiming<Input extends object, Output extends object>(service: string): InitializeMiddleware<Input, Output> {
  return (next, context) => async (args) => {
    const start = performance.now();
    const probe = probes.getStore();
    try {
      return await next(args);
    } finally {
      probe?.calls.push({ name: `${service} ${context.commandName ?? 'call'}`, start, end: performance.now() });
    }
  };
}

interface UndiciRequest {
  method?: unknown;
  origin?: unknown;
  path?: unknown;
}
const pendingFetches = new WeakMap<object, { probe: Probe; record: CallRecord }>();
function undiciRequest(message: unknown): UndiciRequest | undefined {
  const request = (message as { request?: unknown } | null)?.request;
  return typeof request === 'object' && request !== null ? (request as UndiciRequest) : undefined;
}
subscribe('undici:request:create', (message) => {
  const request = undiciRequest(message);
  const probe = probes.getStore();
  if (request === undefined || probe === undefined) return;
  const path = String(request.path ?? '').split('?')[0];
  const record = { name: `fetch ${String(request.method)} ${path}`, start: performance.now(), end: Number.NaN };
  pendingFetches.set(request, { probe, record });
});
const fetchEnded = (message: unknown) => {
  const request = undiciRequest(message);
  const pending = request === undefined ? undefined : pendingFetches.get(request);
  if (request === undefined || pending === undefined) return;
  pendingFetches.delete(request);
  pending.record.end = performance.now();
  pending.probe.calls.push(pending.record);
};
subscribe('undici:request:trailers', fetchEnded);
subscribe('undici:request:error', fetchEnded);

/** SDK clients shared by every container built with them, and how often compose.ts took them. */
export class SharedSdkClients {
  readonly dynamodb = new DynamoDBClient({});
  readonly secretsManager = new SecretsManagerClient({});
  taken = 0;
  constructor() {
    this.dynamodb.middlewareStack.add(callTiming('DynamoDB'), { step: 'initialize', name: 'benchCallTiming' });
    this.secretsManager.middlewareStack.add(callTiming('SecretsManager'), {
      step: 'initialize',
      name: 'benchCallTiming',
    });
  }
  destroy(): void {
    this.dynamodb.destroy();
    this.secretsManager.destroy();
  }
}

class ClientSharingTracer extends Tracer {
  constructor(private readonly shared: SharedSdkClients) {
    super({ serviceName, captureHTTPsRequests: false });
  }

  override captureAWSv3Client<T>(service: T): T {
    if (service instanceof DynamoDBClient) {
      this.shared.taken += 1;
      return this.shared.dynamodb as unknown as T;
    }
    if (service instanceof SecretsManagerClient) {
      this.shared.taken += 1;
      return this.shared.secretsManager as unknown as T;
    }
    return super.captureAWSv3Client(service);
  }
}

export interface ContainerOptions {
  env?: NodeJS.ProcessEnv;
  clock?: Clock;
  /** Replaces this container's own Secrets Manager secret source (e.g. one shared, already warm). */
  secrets?: SecretSource;
  /** Share these SDK clients instead of creating the container's own. */
  sdk?: SharedSdkClients;
}

export interface Answer {
  status: number;
  /** The handler call alone: from invoking it to its answer. */
  elapsedMs: number;
  /** performance.now() when the handler was invoked. */
  startedAt: number;
  /** broker.getToken alone (undefined when the request did not reach it). */
  brokerMs: number | undefined;
  /** Calls made on this request's behalf (SDK calls on shared clients, fetches), finished or not by the answer. */
  calls: CallRecord[];
  /** Where the broker says the token came from; undefined when it failed. */
  outcome: CacheOutcome | undefined;
  accessToken: string | undefined;
  error: string | undefined;
}

export interface Container {
  broker: TokenBroker;
  /** Sends one API Gateway event through the handler, timing the handler call. */
  request(event: APIGatewayProxyEvent): Promise<Answer>;
}

export function newContainer(options: ContainerOptions = {}): Container {
  const logger = new Logger({ serviceName });
  const metrics = new Metrics({ serviceName, namespace: metricsNamespace });
  const tracer =
    options.sdk === undefined
      ? new Tracer({ serviceName, captureHTTPsRequests: false })
      : new ClientSharingTracer(options.sdk);
  const taken = options.sdk?.taken ?? 0;
  const broker = createBrokerFromEnvironment(options.env ?? process.env, {
    logger,
    metrics: new PowertoolsBrokerMetrics(metrics),
    tracer,
    ...(options.clock === undefined ? {} : { clock: options.clock }),
    ...(options.secrets === undefined ? {} : { secrets: options.secrets }),
  });
  if (options.sdk !== undefined) {
    const expected = options.secrets === undefined ? 2 : 1;
    if (options.sdk.taken - taken !== expected) {
      throw new Error(
        'compose.ts no longer hands its SDK clients to tracer.captureAWSv3Client: the bench cannot share them ' +
          '(see test/bench/container.ts)',
      );
    }
  }
  // Observe each answer's cache outcome, which the HTTP answer does not carry (as test/support/container-worker.ts does).
  const getToken = broker.getToken.bind(broker);
  broker.getToken = async (request) => {
    const started = performance.now();
    const result = await getToken(request);
    const probe = probes.getStore();
    if (probe !== undefined) {
      probe.brokerMs = performance.now() - started;
      probe.outcome = result.cache;
    }
    return result;
  };
  const handler = createHandler(broker, logger, { metrics, tracer });

  return {
    broker,
    async request(event) {
      const probe: Probe = { calls: [] };
      const context = lambdaContext();
      let elapsedMs = 0;
      let startedAt = 0;
      const answer = await probes.run(probe, async () => {
        startedAt = performance.now();
        const result = (await handler(event, context)) as APIGatewayProxyResult;
        elapsedMs = performance.now() - startedAt;
        return result;
      });
      const body = JSON.parse(answer.body) as Record<string, unknown>;
      return {
        status: answer.statusCode,
        elapsedMs,
        startedAt,
        brokerMs: probe.brokerMs,
        calls: probe.calls,
        outcome: probe.outcome,
        accessToken: typeof body.access_token === 'string' ? body.access_token : undefined,
        error: typeof body.error === 'string' ? body.error : undefined,
      };
    },
  };
}
