import { runtimeSettings } from '../contract.js';
import type { Clock } from '../core/ports.js';

export interface ResilientFetchOptions {
  clock: Clock;
  /** One attempt, from connecting to the last byte of the answer. */
  attemptTimeoutMs?: number;
  /**
   * Every attempt and every pause between them. The broker passes its upstream budget (`upstreamBudgetMs`), which
   * checkTimeBudget fits into the function's timeout; the exchange's deadline can end it sooner.
   */
  budgetMs?: number;
  maxAttempts?: number;
  /** A token response or discovery document is a few kilobytes; anything far larger is refused unread. */
  maxBodyBytes?: number;
  random?: () => number;
}

export const fetchDefaults = {
  attemptTimeoutMs: 3_000,
  budgetMs: runtimeSettings.upstreamBudgetMs.default,
  maxAttempts: 3,
  maxBodyBytes: 256 * 1024,
  backoffBaseMs: 100,
  backoffCapMs: 1_000,
};

/** The answer's body exceeded maxBodyBytes; the read was abandoned. */
export class ResponseTooLargeError extends Error {
  override name = 'ResponseTooLargeError';
}

/** Every attempt timed out or failed to connect before the budget ran out. */
export class UpstreamTimeoutError extends Error {
  override name = 'UpstreamTimeoutError';
}

// Each field may be present but undefined: oauth4webapi's custom fetch passes `body: undefined` for a GET.
type FetchInit = {
  method?: string | undefined;
  headers?: Record<string, string> | Headers | undefined;
  body?: string | URLSearchParams | undefined;
  signal?: AbortSignal | null | undefined;
  redirect?: 'manual' | 'follow' | 'error' | undefined;
};

/**
 * fetch for the token endpoint and discovery: Node's built-in fetch, whose pool keeps connections alive
 * across invocations of a container; a timeout on each attempt (connecting included) and on the whole
 * request; retries with exponential backoff and full jitter for network errors, 5xx and 429 (Retry-After
 * honoured when it fits the budget), never for other answers. The undici package would add a separate
 * connect timeout, but it measured at 720 KB and about 140 ms of cold start, so it is not used.
 */
export function createResilientFetch(options: ResilientFetchOptions) {
  const settings = { ...fetchDefaults, ...definedOnly(options) };
  const random = options.random ?? Math.random;
  /** `deadline` (epoch ms, options.clock) ends the request earlier than the budget would: the caller's own budget. */
  return async function resilientFetch(url: string, init: FetchInit = {}, deadline?: number): Promise<Response> {
    const ends = Math.min(options.clock.now() + settings.budgetMs, deadline ?? Number.POSITIVE_INFINITY);
    for (let attempt = 1; ; attempt++) {
      const remaining = ends - options.clock.now();
      if (remaining <= 0) throw new UpstreamTimeoutError('no time left in the budget');
      const signals = [AbortSignal.timeout(Math.max(1, Math.min(settings.attemptTimeoutMs, remaining)))];
      if (init.signal) signals.push(init.signal);
      let pause: number | undefined;
      try {
        const request: RequestInit = { redirect: init.redirect ?? 'manual', signal: AbortSignal.any(signals) };
        if (init.method !== undefined) request.method = init.method;
        if (init.headers !== undefined) {
          request.headers = init.headers instanceof Headers ? Object.fromEntries(init.headers) : init.headers;
        }
        if (init.body !== undefined) request.body = init.body.toString();
        const response = await fetch(url, request);
        if (!isRetryable(response.status) || attempt >= settings.maxAttempts)
          return await readCapped(response, settings.maxBodyBytes);
        pause = retryAfterMs(response.headers.get('retry-after'), options.clock.now()) ?? backoff(attempt, random);
        // When the server asks for more time than the budget has left, its answer is the answer.
        if (options.clock.now() + pause >= ends) return await readCapped(response, settings.maxBodyBytes);
        await response.body?.cancel();
      } catch (error) {
        // The server answered; only failures to get an answer are retried.
        if (init.signal?.aborted || error instanceof ResponseTooLargeError) throw error;
        const timedOut = isTimeout(error);
        if (attempt >= settings.maxAttempts || options.clock.now() >= ends - 1) {
          throw timedOut ? new UpstreamTimeoutError('no answer within the budget', { cause: error }) : error;
        }
        pause = backoff(attempt, random);
        if (options.clock.now() + pause >= ends) {
          throw timedOut ? new UpstreamTimeoutError('no answer within the budget', { cause: error }) : error;
        }
      }
      await options.clock.sleep(pause);
    }
  };
}

function isRetryable(status: number): boolean {
  return status === 429 || status >= 500;
}

function backoff(attempt: number, random: () => number): number {
  return Math.floor(random() * Math.min(fetchDefaults.backoffCapMs, fetchDefaults.backoffBaseMs * 2 ** (attempt - 1)));
}

/** Retry-After is either delta-seconds or an HTTP date. */
export function retryAfterMs(value: string | null, now: number): number | undefined {
  if (value === null) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

function isTimeout(error: unknown): boolean {
  if (error instanceof DOMException && (error.name === 'TimeoutError' || error.name === 'AbortError')) return true;
  const cause = (error as { cause?: { code?: unknown; name?: unknown } } | null)?.cause;
  return cause?.code === 'UND_ERR_CONNECT_TIMEOUT' || cause?.name === 'TimeoutError';
}

/** Reads at most maxBytes, so a hostile or broken server cannot make the broker buffer megabytes. */
async function readCapped(response: Response, maxBytes: number): Promise<Response> {
  const declared = Number(response.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > maxBytes) {
    await response.body?.cancel();
    throw new ResponseTooLargeError(`answer of ${declared} bytes exceeds ${maxBytes}`);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (response.body !== null) {
    for await (const chunk of response.body) {
      size += chunk.byteLength;
      if (size > maxBytes) {
        await response.body.cancel().catch(() => {});
        throw new ResponseTooLargeError(`answer exceeds ${maxBytes} bytes`);
      }
      chunks.push(chunk);
    }
  }
  const headers = new Headers();
  for (const [name, value] of response.headers) headers.set(name, value);
  return new Response(size === 0 ? null : Buffer.concat(chunks), { status: response.status, headers });
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
