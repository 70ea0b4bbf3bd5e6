import { InvokeCommand, type InvokeCommandOutput, LambdaClient } from '@aws-sdk/client-lambda';
import { insecureUrlReason } from './endpoint.js';
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

export interface LambdaTransportOptions {
  kind: 'lambda';
  /** The function's name or ARN (stack output FunctionName / FunctionArn), without a qualifier. */
  functionName: string;
  /** For the LambdaClient created here; defaults to the SDK's region chain. Ignored with lambdaClient. */
  region?: string;
  /**
   * A client of your own (endpoint, credentials, retries, a test double); created on first use otherwise.
   * Its endpoint (or AWS_ENDPOINT_URL_LAMBDA) must be https, or http to loopback: anything else is refused.
   */
  lambdaClient?: LambdaClient;
}

/** Thrown before an Invoke leaves for an endpoint the client refuses. */
class RefusedEndpoint extends Error {
  override name = 'RefusedEndpoint';
}

/** Checks the endpoint the SDK resolved, on this command only, so that a caller's own client is left as it was. */
function refuseInsecureEndpoint(command: InvokeCommand): void {
  command.middlewareStack.add(
    (next) => async (args) => {
      const request = args.request as { protocol?: unknown; hostname?: unknown; port?: unknown };
      if (typeof request.protocol === 'string' && typeof request.hostname === 'string') {
        const bare = request.hostname.includes(':') && !request.hostname.startsWith('[');
        const url = `${request.protocol}//${bare ? `[${request.hostname}]` : request.hostname}`;
        const reason = URL.canParse(url) ? insecureUrlReason(new URL(url)) : 'it is not a URL';
        if (reason !== undefined) throw new RefusedEndpoint(`the Lambda endpoint is refused: ${reason}`);
      }
      return next(args);
    },
    { step: 'build', name: 'tokenBrokerRefuseInsecureEndpoint' },
  );
}

/** `Invoke` on the alias named after the client, the only invocation the broker serves. */
export function createLambdaTransport(options: LambdaTransportOptions): Transport {
  if (options.functionName === '') throw new TypeError('functionName must not be empty');
  let lambda = options.lambdaClient;
  const getLambda = () => {
    lambda ??= new LambdaClient(options.region === undefined ? {} : { region: options.region });
    return lambda;
  };
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();

  return {
    async fetchToken(request: TransportRequest, clock: () => number): Promise<TransportAnswer> {
      const payload = { client: request.client, ...requestFields(request) };
      const command = new InvokeCommand({
        FunctionName: options.functionName,
        Qualifier: request.client,
        Payload: encoder.encode(JSON.stringify(payload)),
      });
      refuseInsecureEndpoint(command);
      const client = getLambda();
      const sentAt = clock();
      let output: InvokeCommandOutput;
      try {
        output = await client.send(command);
      } catch (error) {
        if (error instanceof RefusedEndpoint) {
          throw new TokenBrokerError(transportErrorCode, error.message, { client: request.client, cause: error });
        }
        throw new TokenBrokerError(transportErrorCode, `lambda:Invoke failed: ${describeSdkError(error)}`, {
          client: request.client,
          cause: error,
        });
      }
      const text = output.Payload === undefined ? '' : decoder.decode(output.Payload);
      const parsed = parseJson(text);
      if (output.FunctionError !== undefined)
        throw errorFromFunctionError(output.FunctionError, parsed, request.client);
      return { body: toTokenResponse(parsed, { client: request.client }), sentAt };
    },
  };
}

/**
 * The broker throws a BrokerError whose name is its code, which Lambda reports as `errorType`. Any other
 * function error (a timeout, a crash, an init failure) is reported by type only, its message being free text.
 */
function errorFromFunctionError(functionError: string, parsed: unknown, client: string): TokenBrokerError {
  if (isRecord(parsed) && isBrokerErrorCode(parsed.errorType)) {
    const description = typeof parsed.errorMessage === 'string' ? parsed.errorMessage : '';
    return new TokenBrokerError(parsed.errorType, description, { client });
  }
  const errorType =
    isRecord(parsed) && typeof parsed.errorType === 'string' ? excerpt(parsed.errorType, 100) : 'unknown';
  return new TokenBrokerError(
    transportErrorCode,
    `the function failed without a broker error (${excerpt(functionError, 50)}, errorType ${errorType})`,
    { client },
  );
}

function describeSdkError(error: unknown): string {
  if (!(error instanceof Error)) return 'unknown error';
  return excerpt(error.name === 'Error' ? error.message : `${error.name}: ${error.message}`);
}
