import { TokenBrokerError, transportErrorCode } from './errors.js';
import { printable } from './text.js';

/** What the broker answers on success, over both entry points. */
export interface TokenResponseBody {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  scope: string;
}

export interface TransportRequest {
  client: string;
  /** Already normalized (sorted, de-duplicated, space-joined); absent for the client's default scope. */
  scope?: string;
  /** The token request's `audience` parameter, when the caller names one; the client must allow it. */
  audience?: string;
  /** The RFC 8707 `resource` parameter, when the caller names one; the client must allow it. */
  resource?: string;
  /** Seconds the token must still be valid for; the broker caps it at half a token's lifetime. */
  minTtl?: number;
  /** The caller's token was refused: the broker answers with one issued in the last 30 seconds. */
  forceRefresh?: true;
}

/** The request's fields other than the client: the body over HTTP, beside `client` in an invoke event. */
export function requestFields(request: TransportRequest): Omit<TransportRequest, 'client'> {
  const { client: _client, ...fields } = request;
  return fields;
}

export interface TransportAnswer {
  body: TokenResponseBody;
  /** The clock's reading immediately before the request left: the token's lifetime counts from here. */
  sentAt: number;
}

/** One way of reaching the broker. Failures are thrown as TokenBrokerError. */
export interface Transport {
  fetchToken(request: TransportRequest, clock: () => number): Promise<TransportAnswer>;
}

/** A text that is not the broker's (a gateway or SDK message), bounded and printable, for a description. */
export function excerpt(text: string, max = 300): string {
  return printable(text, max);
}

/**
 * JSON.parse, but a failure never carries the input: V8's SyntaxError quotes part of the text, which for a
 * successful answer is the token itself. Returns undefined for anything that is not JSON.
 */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Checks a success body; anything else is a transport error that mentions none of the body. */
export function toTokenResponse(parsed: unknown, context: { client: string; status?: number }): TokenResponseBody {
  if (
    isRecord(parsed) &&
    typeof parsed.access_token === 'string' &&
    parsed.access_token !== '' &&
    typeof parsed.token_type === 'string' &&
    parsed.token_type.toLowerCase() === 'bearer' &&
    typeof parsed.expires_in === 'number' &&
    Number.isFinite(parsed.expires_in) &&
    parsed.expires_in > 0 &&
    typeof parsed.scope === 'string'
  ) {
    return {
      access_token: parsed.access_token,
      token_type: 'Bearer',
      expires_in: parsed.expires_in,
      scope: parsed.scope,
    };
  }
  throw new TokenBrokerError(
    transportErrorCode,
    'the broker answered success with a body that is not a token response',
    {
      status: context.status,
      client: context.client,
    },
  );
}
