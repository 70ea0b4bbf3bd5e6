import { Sha256 } from '@aws-crypto/sha256-js';
import { fromNodeProviderChain } from '@aws-sdk/credential-providers';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4, type SignatureV4Init } from '@smithy/signature-v4';
import { parseBaseUrl } from './endpoint.js';
import { isBrokerErrorCode, TokenBrokerError, transportErrorCode } from './errors.js';
import {
  excerpt,
  isRecord,
  parseJson,
  requestFields,
  type Transport,
  type TransportAnswer,
  type TransportRequest,
  toTokenResponse,
} from './transport.js';

/** Static credentials or a provider of them (what @aws-sdk/credential-providers returns). */
export type TokenBrokerCredentials = SignatureV4Init['credentials'];

export interface HttpTransportOptions {
  kind: 'http';
  /**
   * The API's stage URL, e.g. the stack output ApiUrl `https://<id>.execute-api.<region>.amazonaws.com/v1/`.
   * https, or http to loopback only (the local dev server); anything else throws a TypeError.
   */
  baseUrl: string;
  /** The region the API is in: part of the SigV4 credential scope. */
  region: string;
  /** Defaults to the default credential chain, `fromNodeProviderChain()`, created on first use. */
  credentials?: TokenBrokerCredentials;
}

export const signingService = 'execute-api';

/** `POST {baseUrl}/clients/{client}/token`, SigV4-signed for execute-api. */
export function createHttpTransport(options: HttpTransportOptions, fetchImpl: typeof fetch | undefined): Transport {
  const base = parseBaseUrl(options.baseUrl);
  if (typeof options.region !== 'string' || !/^[a-z0-9-]{1,32}$/.test(options.region)) {
    throw new TypeError("region must be the API's AWS region, e.g. us-east-1");
  }
  const basePath = base.pathname.replace(/\/+$/, '');
  let signer: SignatureV4 | undefined;
  const getSigner = () => {
    signer ??= new SignatureV4({
      service: signingService,
      region: options.region,
      credentials: options.credentials ?? fromNodeProviderChain(),
      sha256: Sha256,
    });
    return signer;
  };

  return {
    async fetchToken(request: TransportRequest, clock: () => number): Promise<TransportAnswer> {
      const url = new URL(base);
      url.pathname = `${basePath}/clients/${encodeURIComponent(request.client)}/token`;
      const fields = requestFields(request);
      const body = Object.keys(fields).length === 0 ? undefined : JSON.stringify(fields);
      const headers: Record<string, string> = { host: url.host, accept: 'application/json' };
      if (body !== undefined) headers['content-type'] = 'application/json';
      const unsigned = new HttpRequest({
        method: 'POST',
        protocol: url.protocol,
        hostname: url.hostname,
        ...(url.port === '' ? {} : { port: Number(url.port) }),
        path: url.pathname,
        headers,
        ...(body === undefined ? {} : { body }),
      });

      let signed: HttpRequest;
      try {
        signed = (await getSigner().sign(unsigned)) as HttpRequest;
      } catch (error) {
        throw new TokenBrokerError(transportErrorCode, `could not sign the request: ${describe(error)}`, {
          client: request.client,
          cause: error,
        });
      }
      // fetch derives Host from the URL, identical to the signed value; it may not be set by hand.
      const { host: _host, ...sendHeaders } = signed.headers;

      const sentAt = clock();
      let response: Response;
      let text: string;
      try {
        // API Gateway never redirects; a redirect would take the signed request, or bring a token, from elsewhere.
        response = await (fetchImpl ?? fetch)(url, {
          method: 'POST',
          headers: sendHeaders,
          body: body ?? null,
          redirect: 'error',
        });
        text = await response.text();
      } catch (error) {
        throw new TokenBrokerError(transportErrorCode, `the request to the broker failed: ${describe(error)}`, {
          client: request.client,
          cause: error,
        });
      }

      const parsed = parseJson(text);
      if (response.status === 200) {
        return { body: toTokenResponse(parsed, { client: request.client, status: 200 }), sentAt };
      }
      throw errorFromAnswer(response, parsed, request.client);
    },
  };
}

/**
 * A broker error body `{error, error_description}` keeps its code. Anything else came from API Gateway
 * (`{message}` plus x-amzn-ErrorType: a signature or IAM rejection, throttling, an integration failure)
 * or from something else in between.
 */
function errorFromAnswer(response: Response, parsed: unknown, client: string): TokenBrokerError {
  const status = response.status;
  if (isRecord(parsed) && isBrokerErrorCode(parsed.error)) {
    const description = typeof parsed.error_description === 'string' ? parsed.error_description : '';
    return new TokenBrokerError(parsed.error, description, { status, client });
  }
  const errorType = response.headers.get('x-amzn-errortype')?.split(':')[0];
  const message = isRecord(parsed) && typeof parsed.message === 'string' ? `: ${excerpt(parsed.message)}` : '';
  const from = errorType ? `API Gateway (${excerpt(errorType, 100)})` : 'something other than the broker';
  return new TokenBrokerError(transportErrorCode, `HTTP ${status} from ${from}${message}`, { status, client });
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return 'unknown error';
  const cause = error.cause instanceof Error ? ` (${error.cause.message})` : '';
  return excerpt(`${error.message}${cause}`);
}
