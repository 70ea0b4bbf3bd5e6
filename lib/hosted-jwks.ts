import { Duration, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { ClientConfig, ClientRegistry } from '../lambdas/core/config.js';
import { environmentVariables, serviceNameVariable } from '../lambdas/entry/environment.js';
import { jwksPathOf, publishedKeyArnsOf, publishesJwks } from '../lambdas/entry/jwks.js';
import { type BundledFile, type HandlerCode, handlerCodeOf, handlerFunction, jwksHandler } from './handler-function.js';

export interface HostedJwksProps {
  readonly clients: ClientRegistry;
  /** The broker's registry file, which this function's bundle carries too, so both functions read one registry. */
  readonly registryFile: BundledFile;
  readonly serviceName: string;
  readonly logRetention: logs.RetentionDays;
  /** @default from source when the sources are there, else the package's pre-bundled handler */
  readonly code?: HandlerCode;
}

/**
 * The public keys of every private_key_jwt client that has some, at a stable public https URL (a Lambda function
 * URL), for providers that register a client by `jwks_uri` (Epic requires one): GET
 * `<jwksBaseUrl>clients/<client>/jwks.json`. A function of its own, not a route of the broker's API: the API admits
 * only SigV4-signed callers of admitted accounts (and may be PRIVATE), and a provider fetches the JWKS anonymously
 * from the internet. Its role reads KMS public keys and writes its logs, nothing else: no table, no secret.
 */
export class HostedJwks extends Construct {
  readonly fn: lambda.Function;
  readonly url: lambda.FunctionUrl;
  readonly role: iam.Role;

  constructor(scope: Construct, id: string, props: HostedJwksProps) {
    super(scope, id);
    const logGroup = new logs.LogGroup(this, 'Logs', { retention: props.logRetention });
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: 'token-broker hosted JWKS: the public halves of client signing keys, and its logs; nothing else',
    });
    const keyArns = [
      ...new Set((Object.values(props.clients) as ClientConfig[]).flatMap((client) => publishedKeyArnsOf(client))),
    ];
    if (keyArns.length > 0) {
      this.role.addToPrincipalPolicy(
        new iam.PolicyStatement({
          sid: 'PublicKeys',
          actions: ['kms:GetPublicKey'],
          resources: keyArns,
        }),
      );
    }
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'Logs',
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [logGroup.logGroupArn],
      }),
    );
    this.fn = handlerFunction(this, 'Function', {
      code: props.code ?? handlerCodeOf(jwksHandler),
      // Reads a file and, once per key and container, KMS: the least memory that imports the KMS client briskly.
      memorySize: 256,
      timeout: Duration.seconds(10),
      role: this.role,
      logGroup,
      description: 'token-broker: public JWKS of the private_key_jwt clients',
      environment: {
        [environmentVariables.clientsFile]: props.registryFile.name,
        [serviceNameVariable]: props.serviceName,
      },
      bundledFiles: [props.registryFile],
    });
    Validations.of(this.fn).acknowledge({
      id: 'AwsSolutions-L1',
      reason: 'Pinned to nodejs22.x, as the broker function is: the project and its bundle target Node 22.',
    });
    // Anonymous on purpose: a JWKS is public, and the providers that fetch it sign nothing.
    this.url = this.fn.addFunctionUrl({ authType: lambda.FunctionUrlAuthType.NONE });
  }

  /** Whether any client of the registry has public keys to publish. */
  static neededFor(clients: ClientRegistry): boolean {
    return (Object.values(clients) as ClientConfig[]).some(publishesJwks);
  }

  /** The client's JWKS URL, to register at its provider as `jwks_uri`. */
  urlFor(clientName: string): string {
    // The function URL ends with a slash.
    return `${this.url.url}${jwksPathOf(clientName).slice(1)}`;
  }
}
