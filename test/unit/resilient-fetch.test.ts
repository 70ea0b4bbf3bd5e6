/**
 * lambdas/adapters/resilient-fetch.ts on its own, against a real local HTTP server whose every answer the test
 * scripts: what it retries (network errors, timeouts, 5xx, 429) and what it never retries, its backoff and
 * Retry-After, its budget and the caller's deadline, and the cap on what it reads. The clock is a FakeClock, so
 * the budget is counted in the pauses the fetch asks for; only the per-attempt timeouts run in real time.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import {
  createResilientFetch,
  fetchDefaults,
  type ResilientFetchOptions,
  ResponseTooLargeError,
  retryAfterMs,
  UpstreamTimeoutError,
} from '../../lambdas/adapters/resilient-fetch.js';
import { FakeClock } from '../support/fakes.js';

/** What one request to the scripted server looked like. */
interface Seen {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
}

type Answer = (response: ServerResponse, seen: Seen) => void;

/** One HTTP server for the file; each test scripts its answers, the n-th request gets the n-th (the last repeats). */
const server = {
  answers: [] as Answer[],
  seen: [] as Seen[],
  sockets: new Set<Socket>(),
  url: '',
};

const httpServer = createServer((request, response) => {
  const chunks: Buffer[] = [];
  request.on('data', (chunk: Buffer) => chunks.push(chunk));
  request.on('end', () => {
    const seen = {
      method: request.method ?? '',
      path: request.url ?? '',
      headers: request.headers,
      body: Buffer.concat(chunks).toString('utf8'),
    };
    server.seen.push(seen);
    const answer = server.answers[Math.min(server.seen.length, server.answers.length) - 1];
    if (answer === undefined) response.writeHead(501).end('the test scripted no answer');
    else answer(response, seen);
  });
});
httpServer.on('connection', (socket) => {
  server.sockets.add(socket);
  socket.on('close', () => server.sockets.delete(socket));
});

const status =
  (code: number, headers: Record<string, string> = {}, body = `{"status":${code}}`): Answer =>
  (response) => {
    response.writeHead(code, { 'content-type': 'application/json', ...headers });
    response.end(body);
  };
/** Never answers: the request stays open until the client gives up. */
const hang: Answer = () => {};
/** Sends the status line and headers, then nothing more. */
const stallBody: Answer = (response) => {
  response.writeHead(200, { 'content-type': 'application/json' });
  response.write('{"access_token":');
};

/** A clock that records every pause the fetch asks for; time moves only by those pauses. */
class RecordingClock extends FakeClock {
  readonly sleeps: number[] = [];
  override async sleep(ms: number): Promise<void> {
    this.sleeps.push(ms);
    await super.sleep(ms);
  }
}

let clock: RecordingClock;
/** Always the top of the jitter range, so that each pause is the backoff's ceiling less a millisecond. */
const topOfRange = () => 0.999;

function fetchWith(options: Partial<ResilientFetchOptions> = {}) {
  return createResilientFetch({ clock, random: topOfRange, ...options });
}

/** A port nothing listens on: connections are refused. */
async function refusingUrl(): Promise<string> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return `http://127.0.0.1:${port}/token`;
}

before(async () => {
  await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
  server.url = `http://127.0.0.1:${(httpServer.address() as AddressInfo).port}`;
});
after(async () => {
  for (const socket of server.sockets) socket.destroy();
  await new Promise<void>((resolve) => httpServer.close(() => resolve()));
});
beforeEach(() => {
  clock = new RecordingClock();
  server.answers = [];
  server.seen = [];
});

describe('resilient fetch: one attempt', () => {
  it('returns a 2xx answer at the first attempt with its status, headers and body', async () => {
    server.answers = [status(200, { 'x-issuer': 'scripted' }, '{"access_token":"t"}')];
    const response = await fetchWith()(`${server.url}/token`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('x-issuer'), 'scripted');
    assert.deepEqual(await response.json(), { access_token: 't' });
    assert.equal(server.seen.length, 1);
    assert.deepEqual(clock.sleeps, []);
  });

  it('sends the method, the headers (a Headers object or a record) and a form body as given', async () => {
    server.answers = [status(200)];
    const form = new URLSearchParams({ grant_type: 'client_credentials', scope: 'system/*.read' });
    await fetchWith()(`${server.url}/token`, {
      method: 'POST',
      headers: new Headers({ 'content-type': 'application/x-www-form-urlencoded', 'x-trace': 'a' }),
      body: form,
    });
    await fetchWith()(`${server.url}/other`, { method: 'PUT', headers: { 'x-trace': 'b' }, body: 'plain' });
    const [first, second] = server.seen;
    assert.equal(first?.method, 'POST');
    assert.equal(first?.headers['content-type'], 'application/x-www-form-urlencoded');
    assert.equal(first?.headers['x-trace'], 'a');
    assert.equal(first?.body, form.toString());
    assert.equal(second?.method, 'PUT');
    assert.equal(second?.path, '/other');
    assert.equal(second?.headers['x-trace'], 'b');
    assert.equal(second?.body, 'plain');
  });

  it('returns a redirect as it is instead of following it', async () => {
    server.answers = [status(302, { location: `${server.url}/elsewhere` }, '')];
    const response = await fetchWith()(`${server.url}/token`);
    assert.equal(response.status, 302);
    assert.deepEqual(
      server.seen.map((seen) => seen.path),
      ['/token'],
    );
  });

  it('returns a 4xx answer other than 429 without retrying it', async () => {
    for (const code of [400, 401, 403, 404, 409]) {
      server.seen = [];
      server.answers = [status(code), status(200)];
      const response = await fetchWith()(`${server.url}/token`);
      assert.equal(response.status, code, `${code} is the answer`);
      assert.equal(server.seen.length, 1, `${code} is not retried`);
    }
    assert.deepEqual(clock.sleeps, []);
  });
});

describe('resilient fetch: retries', () => {
  it('retries a 5xx answer and returns the answer that follows', async () => {
    server.answers = [status(500), status(503), status(200)];
    const response = await fetchWith()(`${server.url}/token`);
    assert.equal(response.status, 200);
    assert.equal(server.seen.length, 3);
  });

  it('retries a 429 answer', async () => {
    server.answers = [status(429), status(200)];
    const response = await fetchWith()(`${server.url}/token`);
    assert.equal(response.status, 200);
    assert.equal(server.seen.length, 2);
  });

  it('returns the last 5xx answer, readable, once the attempts are used up', async () => {
    server.answers = [status(502), status(503), status(504, {}, '{"error":"temporarily_unavailable"}')];
    const response = await fetchWith()(`${server.url}/token`);
    assert.equal(response.status, 504);
    assert.deepEqual(await response.json(), { error: 'temporarily_unavailable' });
    assert.equal(server.seen.length, fetchDefaults.maxAttempts);
  });

  it('pauses with exponential backoff and full jitter, capped at one second', async () => {
    server.answers = [status(503)];
    await fetchWith({ maxAttempts: 7, budgetMs: 60_000 })(`${server.url}/token`);
    // 100, 200, 400, 800 ms, then the 1 s cap, each scaled by the random draw (0.999).
    assert.deepEqual(clock.sleeps, [99, 199, 399, 799, 999, 999]);
    assert.equal(server.seen.length, 7);
  });

  it('draws each pause anywhere from zero up to the backoff', async () => {
    server.answers = [status(503), status(503), status(200)];
    await fetchWith({ random: () => 0 })(`${server.url}/token`);
    assert.deepEqual(clock.sleeps, [0, 0]);
    clock = new RecordingClock();
    server.seen = [];
    await fetchWith({ random: () => 0.5 })(`${server.url}/token`);
    assert.deepEqual(clock.sleeps, [50, 100]);
  });

  it('waits as long as Retry-After asks, in seconds or as an HTTP date, instead of the backoff', async () => {
    server.answers = [status(503, { 'retry-after': '2' }), status(429, { 'retry-after': '0' }), status(200)];
    await fetchWith()(`${server.url}/token`);
    assert.deepEqual(clock.sleeps, [2_000, 0]);

    clock = new RecordingClock();
    server.seen = [];
    const inThreeSeconds = new Date(clock.now() + 3_000).toUTCString();
    server.answers = [status(503, { 'retry-after': inThreeSeconds }), status(200)];
    await fetchWith()(`${server.url}/token`);
    assert.deepEqual(clock.sleeps, [3_000]);
  });

  it('returns the answer at once when its Retry-After asks for more time than the budget has left', async () => {
    server.answers = [status(503, { 'retry-after': '10' }), status(200)];
    const response = await fetchWith({ budgetMs: 5_000 })(`${server.url}/token`);
    assert.equal(response.status, 503);
    assert.equal(response.headers.get('retry-after'), '10');
    assert.equal(server.seen.length, 1);
    assert.deepEqual(clock.sleeps, []);
  });

  it('returns the 5xx answer when the next backoff would not fit in the budget', async () => {
    server.answers = [status(503), status(503), status(200)];
    // 99 ms fits in 150, the next 199 ms does not.
    const response = await fetchWith({ budgetMs: 150 })(`${server.url}/token`);
    assert.equal(response.status, 503);
    assert.equal(server.seen.length, 2);
    assert.deepEqual(clock.sleeps, [99]);
  });

  it('retries a refused connection and throws the network error once the attempts are used up', async () => {
    const url = await refusingUrl();
    const error = await fetchWith()(url).then(
      () => undefined,
      (thrown: unknown) => thrown,
    );
    assert.ok(error instanceof TypeError, `a network error, not ${String(error)}`);
    assert.ok(!(error instanceof UpstreamTimeoutError));
    assert.deepEqual(clock.sleeps, [99, 199]);
  });

  it('throws the network error at once when the next backoff would not fit in the budget', async () => {
    const url = await refusingUrl();
    await assert.rejects(fetchWith({ budgetMs: 150 })(url), TypeError);
    assert.deepEqual(clock.sleeps, [99]);
  });
});

describe('resilient fetch: timeouts, budget and deadline', () => {
  it('gives up an attempt that gets no answer within the attempt timeout, retries it, and throws UpstreamTimeoutError', async () => {
    server.answers = [hang];
    await assert.rejects(fetchWith({ attemptTimeoutMs: 50 })(`${server.url}/token`), UpstreamTimeoutError);
    assert.equal(server.seen.length, fetchDefaults.maxAttempts);
    assert.deepEqual(clock.sleeps, [99, 199]);
  });

  it('counts the body in the attempt timeout: an answer whose body stalls is retried', async () => {
    server.answers = [stallBody, stallBody, status(200, {}, '{"access_token":"t"}')];
    const response = await fetchWith({ attemptTimeoutMs: 50 })(`${server.url}/token`);
    assert.deepEqual(await response.json(), { access_token: 't' });
    assert.equal(server.seen.length, 3);
  });

  it('gets a timed-out request an answer when a retry succeeds', async () => {
    server.answers = [hang, status(200)];
    const response = await fetchWith({ attemptTimeoutMs: 50 })(`${server.url}/token`);
    assert.equal(response.status, 200);
    assert.equal(server.seen.length, 2);
  });

  it('ends an attempt at the caller’s deadline when it comes before the attempt timeout', async () => {
    server.answers = [hang];
    const started = clock.now();
    // The attempt timeout alone would wait 3 s; the deadline leaves 40 ms, and no backoff fits after it.
    await assert.rejects(fetchWith()(`${server.url}/token`, {}, started + 40), UpstreamTimeoutError);
    assert.equal(server.seen.length, 1);
    assert.deepEqual(clock.sleeps, []);
  });

  it('sends nothing when the deadline has already passed', async () => {
    server.answers = [status(200)];
    await assert.rejects(
      fetchWith()(`${server.url}/token`, {}, clock.now()),
      (error: unknown) => error instanceof UpstreamTimeoutError && /no time left/.test(error.message),
    );
    assert.equal(server.seen.length, 0);
  });

  it('keeps to its own budget when the deadline is later', async () => {
    server.answers = [status(503)];
    const response = await fetchWith({ budgetMs: 150 })(`${server.url}/token`, {}, clock.now() + 60_000);
    assert.equal(response.status, 503);
    assert.deepEqual(clock.sleeps, [99]);
  });

  it('throws the caller’s abort without retrying', async () => {
    server.answers = [hang];
    const controller = new AbortController();
    const pending = fetchWith()(`${server.url}/token`, { signal: controller.signal });
    while (server.seen.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    controller.abort();
    await assert.rejects(pending, (error: unknown) => error instanceof Error && error.name === 'AbortError');
    assert.equal(server.seen.length, 1);
    assert.deepEqual(clock.sleeps, []);
  });
});

describe('resilient fetch: the size cap', () => {
  it('refuses an answer whose Content-Length exceeds the cap, without retrying', async () => {
    server.answers = [status(200, {}, 'x'.repeat(2_000)), status(200)];
    await assert.rejects(fetchWith({ maxBodyBytes: 1_000 })(`${server.url}/token`), ResponseTooLargeError);
    assert.equal(server.seen.length, 1);
  });

  it('stops reading a chunked answer once it passes the cap', async () => {
    server.answers = [
      (response) => {
        response.writeHead(200, { 'content-type': 'application/json' });
        for (let i = 0; i < 10; i++) response.write('y'.repeat(500));
        response.end();
      },
    ];
    await assert.rejects(fetchWith({ maxBodyBytes: 1_000 })(`${server.url}/token`), ResponseTooLargeError);
    assert.equal(server.seen.length, 1);
  });

  it('reads an answer of exactly the cap', async () => {
    server.answers = [status(200, {}, 'z'.repeat(1_000))];
    const response = await fetchWith({ maxBodyBytes: 1_000 })(`${server.url}/token`);
    assert.equal((await response.text()).length, 1_000);
  });

  it('caps the final 5xx answer too', async () => {
    server.answers = [status(503, {}, 'e'.repeat(2_000))];
    await assert.rejects(
      fetchWith({ maxBodyBytes: 1_000, maxAttempts: 1 })(`${server.url}/token`),
      ResponseTooLargeError,
    );
  });
});

describe('Retry-After', () => {
  const now = Date.UTC(2026, 10, 29, 12, 0, 0);

  it('reads delta-seconds, surrounding spaces allowed', () => {
    assert.equal(retryAfterMs('2', now), 2_000);
    assert.equal(retryAfterMs(' 30 ', now), 30_000);
    assert.equal(retryAfterMs('0', now), 0);
  });

  it('reads an HTTP date as the time until then, and a past date as no wait', () => {
    assert.equal(retryAfterMs(new Date(now + 4_000).toUTCString(), now), 4_000);
    assert.equal(retryAfterMs(new Date(now - 60_000).toUTCString(), now), 0);
  });

  it('ignores an absent or unreadable value', () => {
    assert.equal(retryAfterMs(null, now), undefined);
    assert.equal(retryAfterMs('soon', now), undefined);
    assert.equal(retryAfterMs('', now), undefined);
  });
});
