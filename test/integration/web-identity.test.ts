import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { webIdentityTokenSeconds } from '../../lambdas/adapters/sts-web-identity.js';
import { startBrokerHarness } from '../support/broker-harness.js';
import { type FederatingIdp, startFederatingIdp } from '../support/federating-idp.js';
import { assertNoLeak } from '../support/logs.js';
import { type StsStandIn, startStsStandIn } from '../support/sts.js';
import { loadTestTls } from '../support/tls.js';

type Harness = Awaited<ReturnType<typeof startBrokerHarness>>;
let harness: Harness;
let sts: StsStandIn;
let idp: FederatingIdp;
const entraAudience = 'api://AzureADTokenExchange';

before(async () => {
  harness = await startBrokerHarness();
  const tls = loadTestTls();
  sts = await startStsStandIn({ tls, principalArn: 'arn:aws:iam::123456789012:role/TokenBroker-FunctionRole' });
  process.env.AWS_ENDPOINT_URL_STS = sts.endpoint;
  const credential = { issuer: sts.issuer, subject: sts.principalArn, audience: entraAudience, scopes: ['fhir.read'] };
  idp = await startFederatingIdp({
    tls,
    credentials: [
      { clientId: 'fed-rs-id', ...credential },
      { clientId: 'fed-es-id', ...credential },
      // Trusts the role for another audience only: the broker's assertion must not pass here.
      { clientId: 'fed-other-id', ...credential, audience: 'api://another-provider' },
    ],
  });
  for (const [name, clientId] of [
    ['fed-rs', 'fed-rs-id'],
    ['fed-es', 'fed-es-id'],
    ['fed-other', 'fed-other-id'],
    ['fed-disabled', 'fed-rs-id'],
  ]) {
    harness.secretsManager.putSecret(`token-broker/${name}`, JSON.stringify({ client_id: clientId }));
  }
  harness.secretsManager.putSecret(
    'token-broker/fed-secret',
    JSON.stringify({ client_id: 'fed-rs-id', client_secret: 'a-long-lived-secret-that-must-not-exist' }),
  );
});
after(async () => {
  delete process.env.AWS_ENDPOINT_URL_STS;
  await Promise.all([harness?.close(), sts?.close(), idp?.close()]);
});

const federated = (name: string, extra: Record<string, unknown> = {}) => ({
  wellKnownUrl: idp.wellKnownUrl,
  secretName: `token-broker/${name}`,
  scopes: ['fhir.read'],
  authMethod: 'private_key_jwt',
  webIdentityAudience: entraAudience,
  ...extra,
});

describe('secretless client authentication: an assertion AWS STS signs for the function role', () => {
  it('gets a token with an STS web identity token as client_assertion, which the provider verifies', async () => {
    const calls = sts.tokenCalls();
    await harness.withExtraClient('fed-rs', federated('fed-rs'), async (http) => {
      const answer = await http('fed-rs');
      assert.equal(answer.statusCode, 200, answer.body);
      assert.deepEqual(Object.keys(answer.json).sort(), ['access_token', 'expires_in', 'scope', 'token_type']);
    });
    assert.equal(sts.tokenCalls(), calls + 1);
    assert.deepEqual(sts.lastRequest(), {
      audiences: [entraAudience],
      algorithm: 'RS256',
      durationSeconds: webIdentityTokenSeconds,
    });
    const claims = idp.lastVerifiedClaims();
    assert.equal(claims?.iss, sts.issuer);
    assert.equal(claims?.sub, sts.principalArn);
    assert.equal(claims?.aud, entraAudience);
  });

  it('signs with ES384 when the client asks for it', async () => {
    await harness.withExtraClient(
      'fed-es',
      federated('fed-es', { webIdentitySigningAlgorithm: 'ES384' }),
      async (http) => {
        const answer = await http('fed-es');
        assert.equal(answer.statusCode, 200, answer.body);
      },
    );
    assert.equal(sts.lastRequest()?.algorithm, 'ES384');
  });

  it('asks STS again only when it asks the provider again: a cached token needs no assertion', async () => {
    await harness.withExtraClient('fed-rs', federated('fed-rs'), async (http) => {
      const stsCalls = sts.tokenCalls();
      const idpCalls = idp.tokenRequests();
      for (let i = 0; i < 5; i++) assert.equal((await http('fed-rs')).statusCode, 200);
      assert.equal(sts.tokenCalls() - stsCalls, idp.tokenRequests() - idpCalls);
      assert.ok(idp.tokenRequests() - idpCalls <= 1, 'at most one renewal in five requests');
    });
  });

  it('an account without outbound identity federation: 503 naming the cause and the fix, nothing sent', async () => {
    sts.setEnabled(false);
    const idpCalls = idp.tokenRequests();
    try {
      await harness.withExtraClient('fed-disabled', federated('fed-disabled'), async (http) => {
        const answer = await http('fed-disabled');
        assert.equal(answer.statusCode, 503, answer.body);
        assert.equal(answer.json.error, 'unavailable');
        assert.match(
          String(answer.json.error_description),
          /OutboundWebIdentityFederationDisabledException.*aws iam enable-outbound-web-identity-federation/,
        );
      });
    } finally {
      sts.setEnabled(true);
    }
    assert.equal(idp.tokenRequests(), idpCalls, 'no token request without an assertion');
  });

  it('a provider that trusts the role for another audience refuses the assertion, and no token is served', async () => {
    await harness.withExtraClient('fed-other', federated('fed-other'), async (http) => {
      const answer = await http('fed-other');
      assert.ok(answer.statusCode >= 400, answer.body);
      assert.equal(answer.json.access_token, undefined);
      assert.match(String(answer.json.error_description), /invalid_client/);
    });
  });

  it('refuses a secret that holds a client secret beside the client id: nothing long-lived may exist', async () => {
    await harness.withExtraClient('fed-secret', federated('fed-secret'), async (http) => {
      const answer = await http('fed-secret');
      assert.equal(answer.statusCode, 503, answer.body);
      assert.match(String(answer.json.error_description), /must hold only client_id: AWS STS signs/);
    });
  });

  it('logs neither the STS tokens nor the access tokens', () => {
    assertNoLeak(harness.output.text(), [...sts.tokens(), ...idp.issuedTokens()]);
  });
});
