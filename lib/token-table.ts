import { RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct } from 'constructs';
import { partitionKey, ttlAttribute } from '../lambdas/adapters/dynamodb-schema.js';

/** The token cache's table (`Tokens`), in the broker's scope. */
export function tokenTable(scope: Construct): dynamodb.Table {
  const table = new dynamodb.Table(scope, 'Tokens', {
    partitionKey: { name: partitionKey, type: dynamodb.AttributeType.STRING },
    timeToLiveAttribute: ttlAttribute,
    billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
    encryption: dynamodb.TableEncryption.AWS_MANAGED,
    // A cache: every item can be fetched again from the identity provider.
    removalPolicy: RemovalPolicy.DESTROY,
  });
  Validations.of(table).acknowledge({
    id: 'AwsSolutions-DDB3',
    reason:
      'The table caches short-lived access tokens that the broker re-fetches on a miss. Point-in-time ' +
      'recovery would restore nothing of value and would keep bearer tokens in backups for 35 days.',
  });
  return table;
}

/**
 * The key cached tokens are sealed under (`SealingKey`), which the table never sees. A secret rather than a KMS
 * data key: the function already reads Secrets Manager at cold start, so the key comes in parallel with the
 * client's secret through the SDK client the bundle has anyway, with no KMS client added to the cold start and no
 * KMS call per sealed item; and the tests run the real SDK path against the Secrets Manager stand-in.
 */
export function sealingKeySecret(scope: Construct): secretsmanager.Secret {
  const secret = new secretsmanager.Secret(scope, 'SealingKey', {
    description:
      'token-broker: the random key the cached tokens are sealed under in the token table (not a client secret)',
    // 64 letters and digits, about 380 bits; the function derives a key per cached token from it.
    generateSecretString: { passwordLength: 64, excludePunctuation: true, includeSpace: false },
    // It seals nothing but the table's cache, which goes with the stack too.
    removalPolicy: RemovalPolicy.DESTROY,
  });
  Validations.of(secret).acknowledge({
    id: 'AwsSolutions-SMG4',
    reason:
      'The sealing key has no counterpart outside this stack, so a rotation Lambda would have nothing to ' +
      'update: rotating it is putting a new random value (docs/deploy.md), after which every cached token ' +
      'reads as a miss once and is fetched again from the identity provider.',
  });
  return secret;
}
