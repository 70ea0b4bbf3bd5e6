/**
 * The client restates the broker's error codes and scope normalization so that its package stands alone;
 * these tests hold the copies to the broker's own definitions in lambdas/core.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type BrokerErrorCode,
  brokerErrorCodes,
  createTokenBrokerClient,
  isBrokerErrorCode,
} from '@token-broker/client';
import fc from 'fast-check';
import { type ErrorCode, errorStatus } from '../../lambdas/core/errors.js';
import { normalizeScope } from '../../lambdas/core/scope.js';

// Compile-time half of the agreement: `tsc --noEmit` fails when either union has a member the other lacks.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const codeUnionsAgree: Same<BrokerErrorCode, ErrorCode> = true;

/** A client whose fetch records the scope each request asked for and answers with a token for it. */
function recordingClient() {
  const requestedScopes: (string | undefined)[] = [];
  const recordScope: typeof fetch = async (_input, init) => {
    const body = typeof init?.body === 'string' ? (JSON.parse(init.body) as { scope?: string }) : {};
    requestedScopes.push(body.scope);
    const answer = { access_token: 'token', token_type: 'Bearer', expires_in: 3600, scope: body.scope ?? '' };
    return new Response(JSON.stringify(answer), { status: 200, headers: { 'content-type': 'application/json' } });
  };
  const client = createTokenBrokerClient({
    transport: {
      kind: 'http',
      baseUrl: 'https://abc123.execute-api.us-east-1.amazonaws.com/v1/',
      region: 'us-east-1',
      credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'test-secret' },
    },
    fetch: recordScope,
  });
  return { client, requestedScopes };
}

describe("token-broker client: agreement with the broker's protocol", () => {
  it('knows exactly the error codes the broker answers with', () => {
    assert.equal(codeUnionsAgree, true);
    assert.deepEqual([...brokerErrorCodes].sort(), Object.keys(errorStatus).sort());
    for (const code of Object.keys(errorStatus)) assert.ok(isBrokerErrorCode(code), `${code} is not recognised`);
  });

  it('asks for the scope set the broker normalizes the request to', async () => {
    const scopeToken = fc.constantFrom('a', 'b', 'c', 'system/*.read', 'system/*.write', 'x.y');
    const separator = fc.constantFrom(' ', '  ', '   ');
    const scope = fc
      .tuple(fc.array(fc.tuple(scopeToken, separator), { minLength: 1, maxLength: 8 }), separator, fc.boolean())
      .map(([parts, lead, padded]) => `${padded ? lead : ''}${parts.map(([token, gap]) => token + gap).join('')}`);
    await fc.assert(
      fc.asyncProperty(scope, async (requested) => {
        const { client, requestedScopes } = recordingClient();
        await client.getToken({ client: 'bwell', scope: requested });
        assert.deepEqual(requestedScopes, [normalizeScope(requested).join(' ')]);
      }),
    );
  });
});
