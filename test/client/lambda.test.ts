import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  InvokeCommand,
  type InvokeCommandInput,
  type InvokeCommandOutput,
  LambdaClient,
  ResourceNotFoundException,
} from '@aws-sdk/client-lambda';
import { createTokenBrokerClient, TokenBrokerError } from '@token-broker/client';
import { type BrokerHarness, functionArn, resourceIndicators, startBrokerHarness } from '../support/broker-harness.js';

const functionName = 'token-broker';
const encoder = new TextEncoder();
const decoder = new TextDecoder();
let harness: BrokerHarness;

/** What the Lambda SDK returns: Payload is a Uint8Array (a Uint8ArrayBlobAdapter, to be exact). */
function payload(value: unknown): NonNullable<InvokeCommandOutput['Payload']> {
  return encoder.encode(JSON.stringify(value)) as NonNullable<InvokeCommandOutput['Payload']>;
}

function decodePayload(input: InvokeCommandInput | undefined): unknown {
  assert.ok(input?.Payload instanceof Uint8Array, 'the client sends the payload as bytes');
  return JSON.parse(decoder.decode(input.Payload));
}

/**
 * A LambdaClient whose send runs the real handler: the InvokeCommand's Qualifier becomes the invoked ARN's
 * alias, its Payload the event; a thrown error becomes a function error as the Node.js runtime reports it.
 */
function handlerBackedLambda(options: { aliasFor?: (qualifier: string | undefined) => string | undefined } = {}) {
  const invocations: InvokeCommandInput[] = [];
  const lambda = new LambdaClient({ region: 'us-east-1' });
  const send = async (command: unknown): Promise<InvokeCommandOutput> => {
    assert.ok(command instanceof InvokeCommand);
    const input = command.input;
    invocations.push(input);
    if (input.FunctionName !== functionName) {
      throw new ResourceNotFoundException({
        message: `Function not found: ${functionArn.replace(functionName, String(input.FunctionName))}`,
        $metadata: { httpStatusCode: 404 },
        Type: 'User',
      });
    }
    const qualifier = options.aliasFor === undefined ? input.Qualifier : options.aliasFor(input.Qualifier);
    const base = { $metadata: { httpStatusCode: 200 }, StatusCode: 200, ExecutedVersion: '1' };
    try {
      return { ...base, Payload: payload(await harness.invoke(decodePayload(input), qualifier)) };
    } catch (thrown) {
      const error = thrown instanceof Error ? thrown : new Error(String(thrown));
      return {
        ...base,
        FunctionError: 'Unhandled',
        Payload: payload({ errorType: error.name, errorMessage: error.message, trace: error.stack?.split('\n') }),
      };
    }
  };
  lambda.send = send as LambdaClient['send'];
  return { lambda, invocations };
}

function newClient(lambda: LambdaClient, clock?: () => number) {
  return createTokenBrokerClient({
    transport: { kind: 'lambda', functionName, lambdaClient: lambda },
    ...(clock === undefined ? {} : { clock }),
  });
}

function rejectsWith(code: string, description?: RegExp) {
  return (error: unknown) => {
    assert.ok(error instanceof TokenBrokerError, `expected a TokenBrokerError, got ${String(error)}`);
    assert.equal(error.code, code);
    assert.equal(error.status, undefined);
    if (description !== undefined) assert.match(error.description, description);
    return true;
  };
}

describe('token-broker client over Lambda Invoke, against the real handler', () => {
  before(async () => {
    harness = await startBrokerHarness();
  });

  after(async () => {
    await harness?.close();
  });

  it("invokes the alias named after the client and returns the handler's token", async () => {
    const { lambda, invocations } = handlerBackedLambda();
    const token = await newClient(lambda).getToken({ client: 'bwell' });
    assert.equal(token.tokenType, 'Bearer');
    assert.equal(token.scope, 'system/*.read');
    assert.ok(token.accessToken.length > 10);
    assert.equal(invocations.length, 1);
    assert.equal(invocations[0]?.FunctionName, functionName);
    assert.equal(invocations[0]?.Qualifier, 'bwell');
    assert.equal(invocations[0]?.InvocationType, undefined);
    assert.deepEqual(decodePayload(invocations[0]), { client: 'bwell' });
  });

  it('sends the normalized scope set and serves equal sets and repeated calls from memory', async () => {
    const { lambda, invocations } = handlerBackedLambda();
    const client = newClient(lambda);
    const token = await client.getToken({ client: 'bwell', scope: 'system/*.write system/*.read system/*.read' });
    assert.deepEqual(decodePayload(invocations[0]), { client: 'bwell', scope: 'system/*.read system/*.write' });
    assert.equal(token.scope, 'system/*.read system/*.write');
    assert.equal(await client.getToken({ client: 'bwell', scope: 'system/*.read system/*.write' }), token);
    assert.equal(await client.getToken({ client: 'bwell', scope: 'system/*.write system/*.read' }), token);
    assert.equal(invocations.length, 1);
  });

  it('sends audience and resource beside the client, and keeps one token per resource', async () => {
    const { lambda, invocations } = handlerBackedLambda();
    const client = newClient(lambda);
    const r4 = await client.getToken({ client: 'resourced' });
    const dstu2 = await client.getToken({ client: 'resourced', resource: resourceIndicators.dstu2 });
    assert.deepEqual(decodePayload(invocations[0]), { client: 'resourced' });
    assert.deepEqual(decodePayload(invocations[1]), { client: 'resourced', resource: resourceIndicators.dstu2 });
    assert.equal(invocations[1]?.Qualifier, 'resourced');
    assert.notEqual(dstu2.accessToken, r4.accessToken);
    assert.equal(await client.getToken({ client: 'resourced', resource: resourceIndicators.dstu2 }), dstu2);
    assert.equal(await client.getToken({ client: 'resourced' }), r4);
    await client.getToken({ client: 'audienced', audience: 'https://billing.test/' });
    assert.deepEqual(decodePayload(invocations[2]), { client: 'audienced', audience: 'https://billing.test/' });
    await assert.rejects(
      client.getToken({ client: 'audienced', audience: 'https://other.test/' }),
      rejectsWith('invalid_target'),
    );
    assert.equal(invocations.length, 4);
  });

  it('shares one invocation among concurrent callers', async () => {
    const { lambda, invocations } = handlerBackedLambda();
    const client = newClient(lambda);
    const tokens = await Promise.all(Array.from({ length: 8 }, () => client.getToken({ client: 'basic' })));
    assert.equal(new Set(tokens.map((token) => token.accessToken)).size, 1);
    assert.equal(invocations.length, 1);
  });

  it('invokes again once the refresh window is reached', async () => {
    let now = Date.UTC(2030, 0, 1);
    const { lambda, invocations } = handlerBackedLambda();
    const client = newClient(lambda, () => now);
    const first = await client.getToken({ client: 'bwell' });
    now = first.expiresAt - 60_001;
    await client.getToken({ client: 'bwell' });
    assert.equal(invocations.length, 1);
    now = first.expiresAt - 60_000;
    await client.getToken({ client: 'bwell' });
    assert.equal(invocations.length, 2);
  });

  it("surfaces the handler's access_denied when the invoked alias serves another client", async () => {
    // Calling alias bwell for client basic, as a misrouted invocation would.
    const { lambda } = handlerBackedLambda({ aliasFor: () => 'bwell' });
    await assert.rejects(newClient(lambda).getToken({ client: 'basic' }), rejectsWith('access_denied', /alias bwell/));
    // And an unqualified invocation.
    const unqualified = handlerBackedLambda({ aliasFor: () => undefined });
    await assert.rejects(newClient(unqualified.lambda).getToken({ client: 'basic' }), rejectsWith('access_denied'));
  });

  it('raises typed errors for invalid_scope and unknown_client, and does not cache them', async () => {
    const { lambda, invocations } = handlerBackedLambda();
    const client = newClient(lambda);
    for (let attempt = 0; attempt < 2; attempt++) {
      await assert.rejects(
        client.getToken({ client: 'bwell', scope: 'admin' }),
        rejectsWith('invalid_scope', /not allowed scope admin/),
      );
    }
    assert.equal(invocations.length, 2);
    await assert.rejects(client.getToken({ client: 'nobody' }), (error: unknown) => {
      rejectsWith('unknown_client')(error);
      assert.equal((error as TokenBrokerError).client, 'nobody');
      return true;
    });
  });

  it('a Lambda API error (no such function or alias) is a transport_error', async () => {
    const { lambda } = handlerBackedLambda();
    const client = createTokenBrokerClient({
      transport: { kind: 'lambda', functionName: 'no-such-function', lambdaClient: lambda },
    });
    await assert.rejects(client.getToken({ client: 'bwell' }), (error: unknown) => {
      rejectsWith('transport_error', /^lambda:Invoke failed: ResourceNotFoundException: Function not found/)(error);
      assert.ok((error as TokenBrokerError).cause instanceof ResourceNotFoundException);
      return true;
    });
  });

  it("a function error that is not the broker's is a transport_error naming only its type", async () => {
    const lambda = new LambdaClient({ region: 'us-east-1' });
    const send = async (): Promise<InvokeCommandOutput> => ({
      $metadata: { httpStatusCode: 200 },
      StatusCode: 200,
      FunctionError: 'Unhandled',
      Payload: payload({ errorType: 'Sandbox.Timedout', errorMessage: 'Task timed out after 15.00 seconds' }),
    });
    lambda.send = send as LambdaClient['send'];
    await assert.rejects(
      newClient(lambda).getToken({ client: 'bwell' }),
      rejectsWith(
        'transport_error',
        /^the function failed without a broker error \(Unhandled, errorType Sandbox\.Timedout\)$/,
      ),
    );
  });

  it('refuses a plain http Lambda endpoint other than loopback before anything is sent, and allows loopback', async () => {
    const sent: string[] = [];
    const recordingHandler = {
      handle: async (request: { protocol: string; hostname: string }) => {
        sent.push(`${request.protocol}//${request.hostname}`);
        throw new Error('stop here');
      },
    };
    const lambdaAt = (endpoint: string) =>
      new LambdaClient({
        endpoint,
        region: 'us-east-1',
        credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'test-secret' },
        maxAttempts: 1,
        requestHandler: recordingHandler as unknown as LambdaClient['config']['requestHandler'],
      });
    await assert.rejects(
      newClient(lambdaAt('http://lambda.internal.example:8787')).getToken({ client: 'bwell' }),
      rejectsWith(
        'transport_error',
        /^the Lambda endpoint is refused: plain http is allowed only to loopback .* not lambda\.internal\.example; use https$/,
      ),
    );
    assert.deepEqual(sent, []);
    for (const endpoint of ['http://127.0.0.1:8787', 'http://localhost:8787', 'https://lambda.internal.example']) {
      await assert.rejects(
        newClient(lambdaAt(endpoint)).getToken({ client: 'bwell' }),
        rejectsWith('transport_error', /^lambda:Invoke failed: stop here$/),
      );
    }
    assert.equal(sent.length, 3);
  });

  it('strips control characters from a function error before it goes into an error', async () => {
    const lambda = new LambdaClient({ region: 'us-east-1' });
    const send = async (): Promise<InvokeCommandOutput> => ({
      $metadata: { httpStatusCode: 200 },
      StatusCode: 200,
      FunctionError: 'Unhandled',
      Payload: payload({ errorType: 'unavailable', errorMessage: 'down\u001b[2K\rFORGED\u0007' }),
    });
    lambda.send = send as LambdaClient['send'];
    await assert.rejects(newClient(lambda).getToken({ client: 'bwell' }), (error: unknown) => {
      rejectsWith('unavailable', /^down\uFFFD\[2K FORGED\uFFFD$/)(error);
      // biome-ignore lint/suspicious/noControlCharactersInRegex: looking for control characters
      assert.doesNotMatch((error as TokenBrokerError).message, /[\u0000-\u001f]/);
      return true;
    });
  });
});
