import { type BrokerErrorCode, brokerErrorCodes } from './protocol.js';
import { printable } from './text.js';

const maxDescriptionLength = 1000;

/**
 * The code of a failure that is not an answer of the broker: the request never reached it, or what came
 * back is not the broker's protocol (API Gateway's own rejections such as a bad signature, a missing IAM
 * grant or throttling; a non-JSON or malformed body; a Lambda API error; credentials that could not be
 * resolved). It is kept apart from the broker's codes so that `unavailable` and `upstream_error` keep
 * meaning what the broker says they mean: its identity provider or secret store failed.
 */
export const transportErrorCode = 'transport_error';

/** Every code a TokenBrokerError can carry: the broker's own codes, and `transport_error`. */
export type TokenBrokerErrorCode = BrokerErrorCode | typeof transportErrorCode;

export function isBrokerErrorCode(value: unknown): value is BrokerErrorCode {
  return typeof value === 'string' && (brokerErrorCodes as readonly string[]).includes(value);
}

export interface TokenBrokerErrorOptions {
  /** The HTTP status of the answer, when the HTTP transport got one. */
  status?: number | undefined;
  client?: string | undefined;
  cause?: unknown;
}

/**
 * A failed getToken. `code` is the broker's error code (the `error` field over HTTP, the `errorType` of
 * a function error over Lambda) or `transport_error`. `description` is the broker's `error_description`,
 * or for a transport error a summary written here. Neither ever contains a token or a response body
 * that might hold one, nor a control character: both are printable on one line whatever the server sent.
 */
export class TokenBrokerError extends Error {
  readonly code: TokenBrokerErrorCode;
  /** The HTTP status the answer came with; undefined over Lambda and when no answer came. */
  readonly status: number | undefined;
  readonly description: string;
  /** The client the token was asked for. */
  readonly client: string | undefined;

  constructor(code: TokenBrokerErrorCode, description: string, options: TokenBrokerErrorOptions = {}) {
    const where = options.status === undefined ? '' : ` (HTTP ${options.status})`;
    const forClient = options.client === undefined ? '' : ` for client ${printable(options.client, 100)}`;
    const shownDescription = printable(description, maxDescriptionLength);
    super(
      `token broker: ${code}${where}${forClient}: ${shownDescription}`,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = 'TokenBrokerError';
    this.code = code;
    this.status = options.status;
    this.description = shownDescription;
    this.client = options.client;
  }
}

/** `error instanceof TokenBrokerError`, optionally narrowed to the given codes. */
export function isTokenBrokerError(error: unknown, ...codes: TokenBrokerErrorCode[]): error is TokenBrokerError {
  return error instanceof TokenBrokerError && (codes.length === 0 || codes.includes(error.code));
}
