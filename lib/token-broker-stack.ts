import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import type { TokenBrokerContext } from './context.js';
import { TokenBroker } from './token-broker.js';

export interface TokenBrokerStackProps extends StackProps {
  /** The validated `tokenBroker` context (see `parseTokenBrokerContext`). */
  readonly config: TokenBrokerContext;
}

/** CloudFormation output ids are alphanumeric; client names are lowercase, so `-` becomes `D` without collisions. */
export function outputIdFor(prefix: string, clientName: string): string {
  return `${prefix}${clientName.replace(/-/g, 'D')}`;
}

export class TokenBrokerStack extends Stack {
  readonly broker: TokenBroker;

  constructor(scope: Construct, id: string, props: TokenBrokerStackProps) {
    super(scope, id, props);
    const { config } = props;
    this.broker = new TokenBroker(this, 'TokenBroker', {
      clients: config.clients,
      ...(config.allowedAccounts === undefined ? {} : { allowedAccounts: config.allowedAccounts }),
      ...(config.allowedOrgId === undefined ? {} : { allowedOrgId: config.allowedOrgId }),
      ...(config.vpcEndpointIds === undefined ? {} : { vpcEndpointIds: config.vpcEndpointIds }),
      ...(config.refreshWindowSeconds === undefined ? {} : { refreshWindowSeconds: config.refreshWindowSeconds }),
    });

    const { broker } = this;
    new CfnOutput(this, 'ApiUrl', { value: broker.api.url, description: 'Base URL of the API stage' });
    new CfnOutput(this, 'FunctionName', { value: broker.fn.functionName, description: 'The broker function' });
    new CfnOutput(this, 'FunctionArn', {
      value: broker.fn.functionArn,
      description: 'The broker function (unqualified)',
    });
    new CfnOutput(this, 'TableName', { value: broker.table.tableName, description: 'The token cache table' });
    for (const name of broker.clientNames) {
      new CfnOutput(this, outputIdFor('AliasArn', name), {
        value: broker.aliasFor(name).functionArn,
        description: `Lambda alias for direct invocations of client ${name}`,
      });
      new CfnOutput(this, outputIdFor('TokenUrl', name), {
        value: broker.tokenUrlFor(name),
        description: `Token route of client ${name}`,
      });
    }
  }
}
