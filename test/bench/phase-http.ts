/**
 * Section 2 and the HTTP half of 6: the local dev server (lambdas/local/dev-server.ts, in a process of its
 * own) under autocannon, then the same autocannon load straight at the token endpoint, no broker.
 *
 * Two loads each: closed loop (10 connections, as fast as the server answers: requests per second, with
 * latency that is mostly queueing), and one caller at a fixed rate below both servers' capacity (the same
 * caller load for both, so latency is service time, not queueing: the side-by-side ratio). autocannon
 * paces each connection on its own timer, so several paced connections fire together and queue.
 *
 * A third server, which answers every request at once with a fixed body, gives the floor of an HTTP request
 * over loopback: no broker could answer faster, so direct/floor bounds the ratio any broker could reach here.
 */
import { spawn } from 'node:child_process';
import autocannon from 'autocannon';
import { phaseCommand, print, repoRoot, scaled, setup, tokenRequests } from './child.js';
import { shellQuote, stopChild, track, waitForStderr } from './processes.js';
import type { Figure, JsonValue } from './protocol.js';
import { count, type Distribution, distribution, ms, ratio, rounded, spread } from './stats.js';

const fasterTarget = 20;

/** A server that answers at once: what an HTTP request over loopback costs with nothing behind it. */
const floorServerCode = `
const body = JSON.stringify({ access_token: 'x'.repeat(40), token_type: 'Bearer', expires_in: 3600, scope: 'bench.read' });
require('node:http')
  .createServer((request, response) => {
    request.resume();
    request.on('end', () => response.writeHead(200, { 'content-type': 'application/json' }).end(body));
  })
  .listen(0, '127.0.0.1', function () {
    console.error('listening on http://127.0.0.1:' + this.address().port);
  });
`;

interface CannonRun {
  latency: Distribution;
  /** Requests per second: 2xx answers over the time from the start to the last of them. */
  rps: number;
  ok: number;
  non2xx: number;
  errors: number;
  durationS: number;
  /** autocannon's own p99 (its histogram has 1 ms resolution). */
  autocannonP99: number;
  stoppedEarly: boolean;
  command: string;
}

interface CannonOptions {
  url: string;
  headers: Record<string, string>;
  body?: string;
  /** Shown instead of the body in the printed command (it holds the client secret). */
  printedBody?: string;
  connections: number;
  amount: number;
  /** Requests per second across all connections; absent: closed loop. */
  overallRate?: number;
  limitMs: number;
  extraCliFlags?: string[];
}

/** autocannon through its API; per-response times are kept from its 'response' events (sub-millisecond). */
function cannon(options: CannonOptions): Promise<CannonRun> {
  const flags = ['-c', String(options.connections), '-a', String(options.amount), '-m', 'POST'];
  if (options.overallRate !== undefined) flags.push('-R', String(options.overallRate));
  for (const [name, value] of Object.entries(options.headers)) flags.push('-H', `${name}=${value}`);
  if (options.body !== undefined) flags.push('-b', options.printedBody ?? options.body);
  flags.push(...(options.extraCliFlags ?? []));
  const command = `npx autocannon ${flags.map(shellQuote).join(' ')} ${options.url}`;

  return new Promise((resolve, reject) => {
    const samples: number[] = [];
    let stoppedEarly = false;
    // Requests per second from the answers themselves: autocannon's own duration is coarse for short runs.
    const startedAt = performance.now();
    let lastAnswerAt = startedAt;
    const instance = autocannon(
      {
        url: options.url,
        method: 'POST',
        headers: options.headers,
        ...(options.body === undefined ? {} : { body: options.body }),
        connections: options.connections,
        amount: options.amount,
        ...(options.overallRate === undefined ? {} : { overallRate: options.overallRate }),
        timeout: 10,
      },
      (error: unknown, result) => {
        clearTimeout(timer);
        if (error !== null && error !== undefined) {
          reject(error instanceof Error ? error : new Error(String(error)));
          return;
        }
        const ok = result['2xx'];
        resolve({
          latency: distribution(samples),
          rps: samples.length / ((lastAnswerAt - startedAt) / 1000),
          ok,
          non2xx: result.non2xx,
          errors: result.errors,
          durationS: result.duration,
          autocannonP99: result.latency.p99,
          stoppedEarly,
          command,
        });
      },
    );
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      if (statusCode >= 200 && statusCode < 300) {
        samples.push(responseTime);
        lastAnswerAt = performance.now();
      }
    });
    const timer = setTimeout(() => {
      stoppedEarly = true;
      instance.stop();
    }, options.limitMs);
  });
}

function runData(run: CannonRun): { [key: string]: JsonValue } {
  return {
    command: run.command,
    latencyMs: { ...rounded(run.latency) },
    requestsPerSecond: Math.round(run.rps),
    ok: run.ok,
    non2xx: run.non2xx,
    errors: run.errors,
    durationSeconds: run.durationS,
    autocannonP99Ms: run.autocannonP99,
    stoppedEarly: run.stoppedEarly,
  };
}

function runProblems(run: CannonRun): string {
  const problems: string[] = [];
  if (run.non2xx > 0) problems.push(`${run.non2xx} non-2xx`);
  if (run.errors > 0) problems.push(`${run.errors} errors`);
  if (run.stoppedEarly) problems.push('STOPPED AT THE TIME LIMIT');
  return problems.length === 0 ? '' : ` — ${problems.join(', ')}`;
}

function rps(run: CannonRun): string {
  return `${Math.round(run.rps).toLocaleString('en-US')} requests/s`;
}

export async function runHttp(): Promise<Figure[]> {
  const connections = 10;
  const amount = scaled(20_000, 1_000);
  const rate = 200;
  const rateAmount = scaled(2_000, 200);
  const limitMs = scaled(120_000, 15_000);
  const jsonHeaders = { 'content-type': 'application/json' };

  print('http: starting the local dev server...');
  const serverArgs = ['--import', 'tsx', 'lambdas/local/dev-server.ts', '--aws', '--no-auth'];
  // --aws: the broker built from this environment (the bench's table, Secrets Manager stand-in and TLS
  // identity provider), as in the in-process figures, instead of the dev server's embedded defaults.
  // --no-auth: autocannon repeats one request, which a signature's date would expire; the figure is the broker's.
  const server = track(
    spawn(process.execPath, serverArgs, {
      cwd: repoRoot,
      env: { ...process.env, PORT: '0' },
      // The broker's per-request log lines go to /dev/null, as the in-process figures' do.
      stdio: ['ignore', 'ignore', 'pipe'],
    }),
  );
  let brokerLoop: CannonRun;
  let brokerRate: CannonRun;
  let brokerCalls: number;
  let warmupCalls: number;
  try {
    const match = await waitForStderr(server, /listening on (http:\/\/127\.0\.0\.1:\d+)/, 60_000);
    const url = `${match[1]}/clients/bench/token`;
    const beforeWarmup = await tokenRequests('main');
    for (let i = 0; i < 200; i++) {
      const response = await fetch(url, { method: 'POST', signal: AbortSignal.timeout(10_000) });
      if (response.status !== 200) throw new Error(`dev server answered ${response.status}: ${await response.text()}`);
      await response.arrayBuffer();
    }
    const before = await tokenRequests('main');
    warmupCalls = before - beforeWarmup;
    print(`http: autocannon against the dev server (closed loop, then ${rate} requests/s)...`);
    brokerLoop = await cannon({ url, headers: jsonHeaders, connections, amount, limitMs });
    brokerRate = await cannon({
      url,
      headers: jsonHeaders,
      connections: 1,
      amount: rateAmount,
      overallRate: rate,
      limitMs,
    });
    brokerCalls = (await tokenRequests('main')) - before;
  } finally {
    await stopChild(server);
  }

  print(`http: autocannon against a server that answers at once (${rate} requests/s)...`);
  const floorServer = track(spawn(process.execPath, ['-e', floorServerCode], { stdio: ['ignore', 'ignore', 'pipe'] }));
  let floorRate: CannonRun;
  try {
    const match = await waitForStderr(floorServer, /listening on (http:\/\/127\.0\.0\.1:\d+)/, 30_000);
    floorRate = await cannon({
      url: `${match[1]}/`,
      headers: jsonHeaders,
      connections: 1,
      amount: rateAmount,
      overallRate: rate,
      limitMs,
    });
  } finally {
    await stopChild(floorServer);
  }

  print(`http: autocannon against the token endpoint, no broker (closed loop, then ${rate} requests/s)...`);
  const body = new URLSearchParams({
    grant_type: 'client_credentials',
    client_id: setup.credentials.clientId,
    client_secret: setup.credentials.clientSecret,
    scope: 'bench.read',
  }).toString();
  const directOptions = {
    url: setup.oidc.main.tokenEndpoint,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body,
    printedBody: body.replace(encodeURIComponent(setup.credentials.clientSecret), '$CLIENT_SECRET'),
    connections,
    limitMs,
    extraCliFlags: ['--ca', setup.caPath],
  };
  const beforeDirect = await tokenRequests('main');
  const directLoop = await cannon({ ...directOptions, amount: scaled(5_000, 500) });
  const beforeDirectRate = await tokenRequests('main');
  const directRate = await cannon({ ...directOptions, connections: 1, amount: rateAmount, overallRate: rate });
  const directRateCalls = (await tokenRequests('main')) - beforeDirectRate;
  const directCalls = (await tokenRequests('main')) - beforeDirect;

  const serverCommand = `PORT=0 node ${serverArgs.join(' ')}  (environment from ${phaseCommand('http')})`;
  const p50Ratio = directRate.latency.p50 / brokerRate.latency.p50;
  const p99Ratio = directRate.latency.p99 / brokerRate.latency.p99;
  const boundRatio = directRate.latency.p50 / floorRate.latency.p50;
  return [
    {
      id: '2',
      title: 'local server over HTTP (autocannon): in-memory hit',
      command: `${brokerLoop.command}\n              ${brokerRate.command}\n     against: ${serverCommand}`,
      details: [
        `closed loop, ${connections} connections: ${rps(brokerLoop)}, ${spread(brokerLoop.latency)} ` +
          `(autocannon's own p99: ${brokerLoop.autocannonP99} ms)${runProblems(brokerLoop)}`,
        `one caller at ${rate} requests/s: ${spread(brokerRate.latency)}${runProblems(brokerRate)}`,
        `token-endpoint calls: ${brokerCalls} during ${count(brokerLoop.ok + brokerRate.ok)} requests (${warmupCalls} during 200 warm-up requests)`,
        'as the load generator sees it: HTTP over loopback, the dev server turning each request into an API Gateway event, the handler',
      ],
      summary: `${rps(brokerLoop)}, p99 ${ms(brokerLoop.latency.p99)}`,
      data: {
        closedLoop: runData(brokerLoop),
        fixedRate: runData(brokerRate),
        tokenEndpointCalls: brokerCalls,
        warmupTokenEndpointCalls: warmupCalls,
      },
    },
    {
      id: '6a',
      title: 'side by side over HTTP: broker vs each request fetching its own token',
      command: `${directRate.command}\n              ${directLoop.command}\n     against the token endpoint the broker uses (${phaseCommand('http')})`,
      details: [
        `same caller load, one caller at ${rate} requests/s: direct ${spread(directRate.latency)}${runProblems(directRate)}`,
        `                                             broker ${spread(brokerRate.latency)}`,
        `latency ratio direct/broker: p50 ${ratio(p50Ratio)}, p99 ${ratio(p99Ratio)}; token-endpoint calls: ${count(directRateCalls)} direct vs ` +
          `${brokerCalls} through the broker (${warmupCalls} when the key was first asked for)`,
        `closed loop: direct ${rps(directLoop)}${runProblems(directLoop)} vs broker ${rps(brokerLoop)} (${ratio(brokerLoop.rps / directLoop.rps)}); ` +
          `token-endpoint calls ${count(directCalls)} vs ${brokerCalls}`,
        `floor, a server that answers at once, same load: ${spread(floorRate.latency)}${runProblems(floorRate)}; so over ` +
          `loopback no broker could be more than ${ratio(boundRatio)} faster than the direct fetch at p50`,
        `the broker's own share over HTTP: p50 ${ms(brokerRate.latency.p50 - floorRate.latency.p50)} above the floor ` +
          '(the dev server shaping an API Gateway event, and the handler)',
        `the ≥ ${fasterTarget}× target is judged in process (6b), where loopback transport does not stand in for the broker's cost`,
      ],
      summary: `p50 ${ratio(p50Ratio)} faster (at most ${ratio(boundRatio)} here), ${count(directRateCalls)}:${Math.max(brokerCalls, warmupCalls)} calls`,
      data: {
        fixedRate: runData(directRate),
        closedLoop: runData(directLoop),
        directTokenEndpointCalls: directCalls,
        brokerTokenEndpointCalls: brokerCalls,
        brokerWarmupTokenEndpointCalls: warmupCalls,
        floorFixedRate: runData(floorRate),
        p50Ratio,
        p99Ratio,
        p50RatioBoundOverLoopback: boundRatio,
        throughputRatio: brokerLoop.rps / directLoop.rps,
      },
    },
  ];
}
