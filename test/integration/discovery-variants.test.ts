import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type BrokerHarness, type HttpAnswer, startBrokerHarness } from '../support/broker-harness.js';
import { assertNoLeak } from '../support/logs.js';

let harness: BrokerHarness;
const issuedTokens: string[] = [];

function served(answer: HttpAnswer): string {
  assert.equal(answer.statusCode, 200, answer.body);
  const token = answer.json.access_token as string;
  issuedTokens.push(token);
  return token;
}

function refused(answer: HttpAnswer, status: number, code: string): string {
  assert.equal(answer.statusCode, status, answer.body);
  assert.deepEqual(Object.keys(answer.json).sort(), ['error', 'error_description']);
  assert.equal(answer.json.error, code);
  return answer.json.error_description as string;
}

const read = ['system/*.read'];

describe('discovery variants against oidc-provider over TLS', () => {
  before(async () => {
    harness = await startBrokerHarness();
  });
  after(async () => {
    const logs = harness.output.text();
    await harness.close();
    assertNoLeak(logs, [...harness.secrets(), ...issuedTokens]);
  });

  it('reads RFC 8414 metadata at /.well-known/oauth-authorization-server and gets a token', async () => {
    const { oidc } = harness;
    const metadata = oidc.metadataRequests();
    const tokens = oidc.tokenRequests();
    await harness.withExtraClient(
      'rfc8414',
      { wellKnownUrl: oidc.oauthMetadataUrl, secretName: 'token-broker/bwell', scopes: read },
      async (http) => served(await http('rfc8414')),
    );
    assert.equal(oidc.metadataRequests(), metadata + 1);
    assert.equal(oidc.tokenRequests(), tokens + 1);
  });

  it('refuses RFC 8414 metadata whose issuer is not the one its location names', async () => {
    const { oidc } = harness;
    // The same document, fetched through the token host's name: it names the issuer on localhost.
    const elsewhere = oidc.oauthMetadataUrl.replace('//localhost:', '//127.0.0.1:');
    const tokens = oidc.tokenRequests();
    await harness.withExtraClient(
      'wrong-issuer',
      { wellKnownUrl: elsewhere, secretName: 'token-broker/bwell', scopes: read },
      async (http) => {
        const description = refused(await http('wrong-issuer'), 502, 'upstream_error');
        assert.match(description, /discovery document of client wrong-issuer names a different issuer/);
      },
    );
    assert.equal(oidc.tokenRequests(), tokens);
  });

  it('runs SMART Backend Services from a smart-configuration: private_key_jwt with aud the token endpoint', async () => {
    const { oidc } = harness;
    const metadata = oidc.metadataRequests();
    served(await harness.http('smart-configured'));
    assert.equal(oidc.metadataRequests(), metadata + 1);
    const assertion = oidc.lastClientAssertion();
    assert.equal(assertion?.claims.aud, oidc.tokenEndpoint);
    assert.equal(assertion?.claims.iss, 'smart-configured-id');
    assert.equal(assertion?.header.alg, 'ES384');
  });

  it('uses the methods a smart-configuration lists to choose client_secret_post', async () => {
    const { oidc } = harness;
    await harness.withExtraClient(
      'smart-secret',
      { wellKnownUrl: oidc.smartConfigurationUrl, secretName: 'token-broker/bwell', scopes: read },
      async (http) => served(await http('smart-secret')),
    );
  });

  it('answers 502 naming the client when a smart-configuration is missing, and sends nothing', async () => {
    const { oidc } = harness;
    const missing = oidc.smartConfigurationUrl.replace('/fhir/r4/', '/fhir/r5/');
    const tokens = oidc.tokenRequests();
    await harness.withExtraClient(
      'smart-missing',
      { wellKnownUrl: missing, secretName: 'token-broker/bwell', scopes: read },
      async (http) => {
        const description = refused(await http('smart-missing'), 502, 'upstream_error');
        assert.match(description, /discovery document of client smart-missing answered HTTP 404/);
      },
    );
    assert.equal(oidc.tokenRequests(), tokens);
  });

  it('sends a client with a fixed tokenEndpoint straight there, fetching no metadata', async () => {
    const { oidc } = harness;
    const metadata = oidc.metadataRequests();
    const tokens = oidc.tokenRequests();
    await harness.withExtraClient(
      'fixed',
      {
        tokenEndpoint: oidc.tokenEndpoint,
        secretName: 'token-broker/bwell',
        scopes: read,
        authMethod: 'client_secret_post',
      },
      async (http) => served(await http('fixed')),
    );
    assert.equal(oidc.tokenRequests(), tokens + 1);
    assert.equal(oidc.metadataRequests(), metadata);
  });

  it('authenticates a fixed-endpoint client without authMethod with client_secret_basic, the RFC 8414 default', async () => {
    const { oidc } = harness;
    // The provider registered this client for client_secret_post, so basic is refused: the default was used.
    await harness.withExtraClient(
      'fixed-basic',
      { tokenEndpoint: oidc.tokenEndpoint, secretName: 'token-broker/bwell', scopes: read },
      async (http) => {
        const description = refused(await http('fixed-basic'), 502, 'upstream_error');
        assert.match(description, /invalid_client/);
      },
    );
  });
});
