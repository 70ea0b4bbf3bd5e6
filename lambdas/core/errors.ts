/**
 * The broker's error model. Every failure a caller can see is a BrokerError with a stable OAuth-style
 * code; its HTTP status follows from the code, so the entry points never decide it themselves.
 * Descriptions are written by the broker and never carry a secret, a token or an upstream body.
 */
// The codes and their statuses are the contract's: callers, tests and the local server read them there too.
export { type ErrorCode, errorStatus } from '../contract.js';

import { type ErrorCode, errorStatus } from '../contract.js';

export interface OAuthErrorBody {
  error: ErrorCode;
  error_description: string;
}

export interface BrokerErrorOptions {
  cause?: unknown;
  upstreamError?: string;
  upstreamStatus?: number;
  upstreamRetryAfterMs?: number;
  /** The provider could not be reached at all (refused, reset, DNS, TLS): no status to go by. */
  upstreamUnreachable?: boolean;
  retryAfterSeconds?: number;
}

export class BrokerError extends Error {
  readonly code: ErrorCode;
  /** The OAuth error code the token endpoint answered with, when it sent one. */
  readonly upstreamError: string | undefined;
  /** The HTTP status the provider answered with, when it answered. */
  readonly upstreamStatus: number | undefined;
  /** How long the provider asked to be left alone (its Retry-After), in milliseconds. */
  readonly upstreamRetryAfterMs: number | undefined;
  /** The provider could not be reached at all. */
  readonly upstreamUnreachable: boolean;
  /** When the caller may usefully try again, in whole seconds: sent as Retry-After over HTTP. */
  readonly retryAfterSeconds: number | undefined;

  constructor(code: ErrorCode, description: string, options?: BrokerErrorOptions) {
    super(description, options);
    // Lambda reports a thrown error's name as the invocation's errorType, so the name is the code.
    this.name = code;
    this.code = code;
    this.upstreamError = options?.upstreamError;
    this.upstreamStatus = options?.upstreamStatus;
    this.upstreamRetryAfterMs = options?.upstreamRetryAfterMs;
    this.upstreamUnreachable = options?.upstreamUnreachable === true;
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }

  get status(): number {
    return errorStatus[this.code];
  }

  toBody(): OAuthErrorBody {
    return { error: this.code, error_description: this.message };
  }
}

/** Anything that is not a BrokerError is a defect: callers learn nothing about it beyond that. */
export function toBrokerError(error: unknown): BrokerError {
  if (error instanceof BrokerError) return error;
  return new BrokerError('server_error', 'the broker failed unexpectedly', { cause: error });
}
