import { ArnFormat, Stack, Validations } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { webIdentityTokenSeconds } from '../lambdas/adapters/sts-web-identity.js';
import { type ClientConfig, type ClientRegistry, defaultWebIdentitySigningAlgorithm } from '../lambdas/core/config.js';

/** What the broker function's role may use: nothing else. */
export interface FunctionRoleResources {
  readonly clients: ClientRegistry;
  readonly table: dynamodb.ITable;
  readonly sealingSecret: secretsmanager.ISecret;
  readonly logGroup: logs.ILogGroup;
}

/**
 * The role's whole policy, statement by statement. `Function` adds one more for `Tracing.ACTIVE`:
 * xray:PutTraceSegments and xray:PutTelemetryRecords on `*`, because X-Ray has no resource-level
 * permissions for them (the API takes no resource ARN), so `*` is the only resource AWS accepts.
 */
export function grantFunctionRole(
  role: iam.Role,
  { clients, table, sealingSecret, logGroup }: FunctionRoleResources,
): void {
  const stack = Stack.of(role);
  role.addToPrincipalPolicy(
    new iam.PolicyStatement({
      sid: 'TokenCache',
      // Exactly the calls lambdas/adapters/dynamodb-cache.ts makes: items and leases by key, and the Scan
      // with which an invalidation finds a client's cached tokens. Not grantReadWriteData: that adds
      // batch, query, update and describe actions the code never uses.
      actions: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:DeleteItem', 'dynamodb:UpdateItem', 'dynamodb:Scan'],
      resources: [table.tableArn],
    }),
  );

  const secretArns = new Set<string>();
  const keysByService = new Map<string, Set<string>>();
  for (const client of Object.values(clients) as ClientConfig[]) {
    const arn = secretArnOf(stack, client.secretName);
    secretArns.add(arn);
    if (client.secretKmsKeyArn !== undefined) {
      // Decrypt only on Secrets Manager's behalf, in the region that holds the secret.
      const region = client.secretName.startsWith('arn:') ? client.secretName.split(':')[3] : stack.region;
      const service = `secretsmanager.${region}.amazonaws.com`;
      const keys = keysByService.get(service) ?? new Set<string>();
      keys.add(client.secretKmsKeyArn);
      keysByService.set(service, keys);
    }
  }
  role.addToPrincipalPolicy(
    new iam.PolicyStatement({
      sid: 'ClientSecrets',
      actions: ['secretsmanager:GetSecretValue'],
      resources: [...secretArns],
    }),
  );
  role.addToPrincipalPolicy(
    new iam.PolicyStatement({
      sid: 'SealingKey',
      // Read only: not grantRead, which adds DescribeSecret the code never calls.
      actions: ['secretsmanager:GetSecretValue'],
      resources: [sealingSecret.secretArn],
    }),
  );
  let keyStatement = 0;
  for (const [service, keys] of keysByService) {
    keyStatement += 1;
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: `ClientSecretKeys${keyStatement}`,
        actions: ['kms:Decrypt'],
        resources: [...keys],
        conditions: { StringEquals: { 'kms:ViaService': service } },
      }),
    );
  }

  const signingKeys = [
    ...new Set(
      (Object.values(clients) as ClientConfig[]).flatMap((client) =>
        client.signingKeyArn === undefined ? [] : [client.signingKeyArn],
      ),
    ),
  ];
  if (signingKeys.length > 0) {
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'ClientSigningKeys',
        // Sign client assertions and read the public half; the private key never leaves KMS.
        actions: ['kms:Sign', 'kms:GetPublicKey'],
        resources: signingKeys,
      }),
    );
  }

  const federated = (Object.values(clients) as ClientConfig[]).filter(
    (client) => client.webIdentityAudience !== undefined,
  );
  if (federated.length > 0) {
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'WebIdentityTokens',
        // Secretless clients' assertions. STS takes no resource here, so the conditions are the bound: only
        // the registry's audiences and algorithms, and tokens of at most the five minutes an assertion lives.
        actions: ['sts:GetWebIdentityToken'],
        resources: ['*'],
        conditions: {
          'ForAllValues:StringEquals': {
            'sts:IdentityTokenAudience': [...new Set(federated.map((client) => client.webIdentityAudience))],
          },
          StringEquals: {
            'sts:SigningAlgorithm': [
              ...new Set(
                federated.map((client) => client.webIdentitySigningAlgorithm ?? defaultWebIdentitySigningAlgorithm),
              ),
            ],
          },
          NumericLessThanEquals: { 'sts:DurationSeconds': webIdentityTokenSeconds },
        },
      }),
    );
  }

  role.addToPrincipalPolicy(
    new iam.PolicyStatement({
      sid: 'FunctionLogs',
      // The log group exists (this stack creates it), so logs:CreateLogGroup is not needed.
      actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
      resources: [logGroup.logGroupArn],
    }),
  );
  Validations.of(role).acknowledge({
    id: 'AwsSolutions-IAM5[Resource::*]',
    reason:
      'Only xray:PutTraceSegments and xray:PutTelemetryRecords (added for active tracing) use "*": X-Ray ' +
      'supports no resource-level permissions for them; and, with a secretless client, sts:GetWebIdentityToken, ' +
      'which takes no resource either and is bounded by conditions on audience, algorithm and duration. Every ' +
      'other statement names its resources.',
  });
}

/** Secret names become ARNs with the `-??????` suffix Secrets Manager appends; full ARNs are used as given. */
export function secretArnOf(stack: Stack, secretName: string): string {
  if (secretName.startsWith('arn:')) return secretName;
  return stack.formatArn({
    service: 'secretsmanager',
    resource: 'secret',
    resourceName: `${secretName}-??????`,
    arnFormat: ArnFormat.COLON_RESOURCE_NAME,
  });
}
