/**
 * Section 1 (and the in-process half of 6): the handler called in this process, one request at a time,
 * against the entry process's dynalite, Secrets Manager stand-in and oidc-provider over TLS.
 */
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { partitionKey } from '../../lambdas/adapters/dynamodb-schema.js';
import { cacheKeyOf } from '../../lambdas/core/broker.js';
import { phaseCommand, print, scaled, setup, tokenEvent, tokenRequests } from './child.js';
import { type Answer, type Container, newContainer, SharedSdkClients } from './container.js';
import { alternating, describeLoop, type LoopResult, type Sample, sequential } from './loop.js';
import type { Figure, JsonValue } from './protocol.js';
import { count, type Distribution, distribution, ms, ratio, rounded, spread } from './stats.js';
import { TimeSplit } from './time-split.js';

export interface InProcessResults {
  figures: Figure[];
  memoryHit: Distribution;
}

const p99TargetMs = 1;
const tableSlackMs = 2;
const fasterTarget = 20;

function loopData(result: LoopResult): { [key: string]: JsonValue } {
  return {
    latencyMs: { ...rounded(result.latency) },
    outcomes: result.outcomes,
    unexpected: result.unexpected,
    stoppedEarly: result.stoppedEarly,
    warmup: result.warmup,
    wallSeconds: Math.round(result.wallMs) / 1000,
  };
}

/** The n-th two-scope set of the miss client: a cache key no request asked for before. */
function missScope(index: number): string {
  const scopes = setup.missScopes;
  let i = index;
  for (let first = 0; first < scopes.length; first++) {
    const pairs = scopes.length - first - 1;
    if (i < pairs) return `${scopes[first]} ${scopes[first + 1 + i]}`;
    i -= pairs;
  }
  throw new RangeError(`only ${(scopes.length * (scopes.length - 1)) / 2} distinct scope pairs`);
}

async function expectOutcome(container: Container, client: string, outcome: string): Promise<void> {
  const answer = await container.request(tokenEvent(client));
  if (answer.status !== 200 || answer.outcome !== outcome) {
    throw new Error(
      `${client}: expected a 200 from ${outcome}, got ${answer.status} ${answer.outcome ?? answer.error}`,
    );
  }
}

function targetWithin(measured: Distribution, raw: Distribution): { text: string; pass: boolean; detail: string } {
  const d50 = measured.p50 - raw.p50;
  const d99 = measured.p99 - raw.p99;
  return {
    text: `p50 within ${tableSlackMs} ms of raw GetItem's (p99 shown)`,
    pass: d50 <= tableSlackMs,
    detail: `over raw GetItem: p50 ${signed(d50)}, p99 ${signed(d99)}`,
  };
}

function signed(value: number): string {
  return value < 0 ? `−${ms(-value)}` : `+${ms(value)}`;
}

/** The loop's sample for one answer; measured answers (past the warm-up) also go into `split`. */
function sampled(answer: Answer, split: TimeSplit, measured: boolean): Sample {
  if (measured) split.add(answer);
  return { ms: answer.elapsedMs, outcome: answer.outcome ?? `error ${answer.error}` };
}

/** Drops the garbage of earlier iterations' containers (run with --expose-gc), as a fresh container's heap has none. */
function collectGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

export async function runInProcess(): Promise<InProcessResults> {
  const command = phaseCommand('inproc');
  const n = scaled(10_000, 300);
  const limitMs = scaled(150_000, 15_000);
  const figures: Figure[] = [];
  const sdk = new SharedSdkClients();

  print('in-process: in-memory hits...');
  // 1a: a warm container, its own SDK clients, the same key over and over.
  const warm = newContainer();
  await expectOutcome(warm, 'bench', 'fetched');
  const memoryEvent = tokenEvent('bench');
  const callsBeforeMemory = await tokenRequests('main');
  const memoryWarmup = scaled(2_000, 200);
  const brokerOnly: number[] = [];
  const memory = await sequential({ count: n, warmup: memoryWarmup, limitMs, expected: 'memory' }, async (index) => {
    const answer = await warm.request(memoryEvent);
    if (index >= memoryWarmup && answer.brokerMs !== undefined) brokerOnly.push(answer.brokerMs);
    return { ms: answer.elapsedMs, outcome: answer.outcome ?? `error ${answer.error}` };
  });
  const brokerPart = distribution(brokerOnly);
  const memoryCalls = (await tokenRequests('main')) - callsBeforeMemory;
  figures.push({
    id: '1a',
    title: 'in-process handler: in-memory hit',
    command,
    details: [
      `${spread(memory.latency)}  (mean ${ms(memory.latency.mean)})`,
      describeLoop(memory),
      `of which broker.getToken itself: p50 ${ms(brokerPart.p50)}, p99 ${ms(brokerPart.p99)}; the rest is the handler around it ` +
        '(middy, the Powertools audit log line and EMF metrics written per request, event parsing)',
      `one warm container (production wiring: Logger, Metrics, Tracer, createBrokerFromEnvironment, createHandler), one key; token-endpoint calls during the run: ${memoryCalls}`,
    ],
    summary: `p99 ${ms(memory.latency.p99)}`,
    target: { text: `p99 < ${p99TargetMs} ms`, pass: memory.latency.p99 < p99TargetMs && memory.unexpected === 0 },
    data: { ...loopData(memory), brokerGetTokenMs: { ...rounded(brokerPart) }, tokenEndpointCalls: memoryCalls },
  });

  print('in-process: broker hits and direct token fetches, side by side...');
  // 6b: what callers do today, each request fetching its own token from the same endpoint, against the broker's
  // hits in 1a's container. Right after 1a, before the fresh-container and miss runs have grown this process's heap.
  const form = new URLSearchParams({
    grant_type: 'client_credentials',
    client_id: setup.credentials.clientId,
    client_secret: setup.credentials.clientSecret,
    scope: 'bench.read',
  }).toString();
  const fetchDirect = async (): Promise<Sample> => {
    const started = performance.now();
    const response = await fetch(setup.oidc.main.tokenEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: form,
      signal: AbortSignal.timeout(10_000),
    });
    const body = (await response.json()) as { access_token?: unknown };
    const elapsed = performance.now() - started;
    return { ms: elapsed, outcome: typeof body.access_token === 'string' ? String(response.status) : 'no token' };
  };
  const hitBroker = async (): Promise<Sample> => {
    const answer = await warm.request(memoryEvent);
    return { ms: answer.elapsedMs, outcome: answer.outcome ?? `error ${answer.error}` };
  };
  // Blocks of each in turn, so that both sides see the same machine (see `alternating`).
  const rounds = scaled(20, 4);
  const perRound = { a: scaled(500, 75), b: scaled(100, 50) };
  const callsBeforeSideBySide = await tokenRequests('main');
  const sideBySide = await alternating(
    { rounds, warmupRounds: 1, perRound, limitMs, expected: { a: 'memory', b: '200' } },
    hitBroker,
    fetchDirect,
  );
  const sideBySideCalls = (await tokenRequests('main')) - callsBeforeSideBySide;
  const direct = sideBySide.b;
  const hits = sideBySide.a;
  const directFetches = direct.latency.count + direct.warmup;
  // The endpoint counts every call; the direct fetches account for theirs, the rest came from the broker.
  const brokerCalls = sideBySideCalls - directFetches;
  const speedup = direct.latency.p50 / hits.latency.p50;
  const speedup99 = direct.latency.p99 / hits.latency.p99;
  figures.push({
    id: '6b',
    title: 'side by side, in process: broker memory hit vs direct token fetch',
    command,
    details: [
      `direct fetch: ${spread(direct.latency)}  — ${count(direct.latency.count)} fetches`,
      `broker hit:   ${spread(hits.latency)}  — ${count(hits.latency.count)} hits`,
      `in ${count(rounds)} alternating rounds of ${count(perRound.a)} hits then ${count(perRound.b)} fetches, after one ` +
        `unmeasured round, ${(hits.wallMs / 1000).toFixed(1)} s${direct.unexpected + hits.unexpected > 0 ? ` — UNEXPECTED OUTCOMES ${JSON.stringify({ hits: hits.outcomes, direct: direct.outcomes })}` : ''}`,
      `latency ratio direct/broker: p50 ${ratio(speedup)}, p99 ${ratio(speedup99)}; token-endpoint calls: ` +
        `${count(directFetches)} direct vs ${count(brokerCalls)} for ${count(hits.latency.count + hits.warmup)} broker hits ` +
        `(${count(sideBySideCalls)} counted at the endpoint)`,
      "direct = Node's fetch (undici, keep-alive) POSTing client_secret_post to the same token endpoint over TLS, reading the JSON; " +
        'broker = the warm container of 1a, same key',
    ],
    summary: `p50 ${ratio(speedup)} faster`,
    target: {
      text: `broker hit ≥ ${fasterTarget}× faster (p50)`,
      pass: speedup >= fasterTarget && brokerCalls === 0 && direct.unexpected === 0 && hits.unexpected === 0,
    },
    data: {
      direct: loopData(direct),
      broker: loopData(hits),
      rounds,
      perRound,
      tokenEndpointCalls: sideBySideCalls,
      directFetches,
      brokerTokenEndpointCalls: brokerCalls,
      p50Ratio: speedup,
      p99Ratio: speedup99,
    },
  });

  print('in-process: raw GetItem and DynamoDB hits in fresh containers, side by side...');
  const benchKey = cacheKeyOf('bench', ['bench.read']);
  const getItem = new GetItemCommand({
    TableName: setup.tableName,
    Key: { [partitionKey]: { S: benchKey } },
    ConsistentRead: true,
  });
  // 1r and 1b in alternating blocks, so that the reference and the figure held against it see the same machine.
  // 1b: a new container per request: empty memory tier, empty secret cache, shared SDK clients.
  const freshSplit = new TimeSplit();
  const tableBlock = 100;
  const tableWarmupRounds = scaled(5, 1);
  const freshWarmup = tableWarmupRounds * tableBlock;
  const { a: raw, b: fresh } = await alternating(
    {
      rounds: n / tableBlock,
      warmupRounds: tableWarmupRounds,
      perRound: { a: tableBlock, b: tableBlock },
      limitMs: 2 * limitMs,
      expected: { a: 'item', b: 'table' },
    },
    async () => {
      const started = performance.now();
      const output = await sdk.dynamodb.send(getItem);
      return { ms: performance.now() - started, outcome: output.Item === undefined ? 'no item' : 'item' };
    },
    async (index) => {
      if (index % 200 === 0) collectGarbage();
      const container = newContainer({ sdk });
      return sampled(await container.request(memoryEvent), freshSplit, index >= freshWarmup);
    },
  );
  figures.push({
    id: '1r',
    title: 'raw DynamoDB GetItem (reference for 1b/1c)',
    command,
    details: [
      spread(raw.latency),
      `${describeLoop(raw)}, in blocks of ${tableBlock} alternating with 1b's`,
      `GetItemCommand (ConsistentRead, the broker's read) on the cached token's item, through one shared DynamoDBClient, against the same dynalite`,
    ],
    summary: `p50 ${ms(raw.latency.p50)} / p99 ${ms(raw.latency.p99)}`,
    data: loopData(raw),
  });

  const freshTarget = targetWithin(fresh.latency, raw.latency);
  figures.push({
    id: '1b',
    title: 'in-process handler: DynamoDB hit, fresh container',
    command,
    details: [
      `${spread(fresh.latency)}  — ${freshTarget.detail}`,
      `${describeLoop(fresh)}, in blocks of ${tableBlock} alternating with 1r's`,
      freshSplit.describe(),
      'a new container per request, built untimed: empty memory tier and secret cache, so a hit is GetSecretValue and GetItem ' +
        '(issued together) + unseal; SDK clients and their keep-alive connections shared across containers; garbage of earlier ' +
        'containers collected (untimed) every 200 requests',
    ],
    summary: `p50 ${ms(fresh.latency.p50)} / p99 ${ms(fresh.latency.p99)}`,
    target: { text: freshTarget.text, pass: freshTarget.pass && fresh.unexpected === 0 },
    data: {
      ...loopData(fresh),
      overRawP50Ms: fresh.latency.p50 - raw.latency.p50,
      overRawP99Ms: fresh.latency.p99 - raw.latency.p99,
    },
  });

  print('in-process: misses...');
  // 1d: one warm container; every request asks for a scope set nobody asked for: a miss in memory and table.
  const fetcher = newContainer({ sdk });
  await expectOutcome(fetcher, 'bench', 'table');
  const missWarmup = scaled(200, 20);
  const missSplit = new TimeSplit();
  const callsBeforeMiss = await tokenRequests('main');
  const miss = await sequential({ count: n, warmup: missWarmup, limitMs, expected: 'fetched' }, async (index) =>
    sampled(await fetcher.request(tokenEvent('miss', missScope(index))), missSplit, index >= missWarmup),
  );
  const missRequests = miss.warmup + miss.latency.count;
  const missCalls = (await tokenRequests('main')) - callsBeforeMiss;
  figures.push({
    id: '1d',
    title: 'in-process handler: miss (token-endpoint call over TLS)',
    command,
    details: [
      spread(miss.latency),
      describeLoop(miss),
      missSplit.describe(),
      `one warm container (discovery cached, keep-alive TLS connection); each request asks the client "miss" for a scope pair never asked for: ` +
        'GetItem (nothing), lease PutItem, POST /token over TLS, PutItem, lease DeleteItem',
      `token-endpoint calls: ${count(missCalls)} for ${count(missRequests)} misses`,
    ],
    summary: `p50 ${ms(miss.latency.p50)} / p99 ${ms(miss.latency.p99)}`,
    target: {
      text: 'exactly 1 token-endpoint call per miss',
      pass: missCalls === missRequests && miss.unexpected === 0,
    },
    data: { ...loopData(miss), split: missSplit.data(), tokenEndpointCalls: missCalls, misses: missRequests },
  });

  print('in-process: DynamoDB hits in a warm container...');
  // 1c: another warm container reads the keys the miss run stored: memory tier empty for each, secret cached.
  const reader = newContainer({ sdk });
  await expectOutcome(reader, 'bench', 'table');
  const tableSplit = new TimeSplit();
  // Half the count: a supplement to 1b, and every request here costs about a millisecond of dynalite.
  const tableWarm = await sequential({ count: n / 2, warmup: missWarmup, limitMs, expected: 'table' }, async (index) =>
    sampled(await reader.request(tokenEvent('miss', missScope(index))), tableSplit, index >= missWarmup),
  );
  const warmTarget = targetWithin(tableWarm.latency, raw.latency);
  figures.push({
    id: '1c',
    title: 'in-process handler: DynamoDB hit, warm container (key not in its memory)',
    command,
    details: [
      `${spread(tableWarm.latency)}  — ${warmTarget.detail}`,
      describeLoop(tableWarm),
      tableSplit.describe(),
      'a second warm container asks for the keys the miss run stored: GetItem + unseal (secret already cached)',
    ],
    summary: `p50 ${ms(tableWarm.latency.p50)} / p99 ${ms(tableWarm.latency.p99)}`,
    target: { text: warmTarget.text, pass: warmTarget.pass && tableWarm.unexpected === 0 },
    data: {
      ...loopData(tableWarm),
      split: tableSplit.data(),
      overRawP50Ms: tableWarm.latency.p50 - raw.latency.p50,
      overRawP99Ms: tableWarm.latency.p99 - raw.latency.p99,
    },
  });

  sdk.destroy();
  return { figures, memoryHit: memory.latency };
}
