import { CfnOutput, Stack, type StackProps, Token } from 'aws-cdk-lib';
import * as sns from 'aws-cdk-lib/aws-sns';
import type { Construct } from 'constructs';
import { ConfigError } from '../lambdas/core/config.js';
import type { TokenBrokerContext } from './context.js';
import { TokenBroker } from './token-broker.js';

export const defaultStackName = 'TokenBroker';

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
    const alarmTopic = config.alarmTopicArn === undefined ? undefined : this.alarmTopic(config.alarmTopicArn);
    this.broker = new TokenBroker(this, 'TokenBroker', {
      clients: config.clients,
      ...(config.allowedAccounts === undefined ? {} : { allowedAccounts: config.allowedAccounts }),
      ...(config.allowedOrgId === undefined ? {} : { allowedOrgId: config.allowedOrgId }),
      ...(config.vpcEndpointIds === undefined ? {} : { vpcEndpointIds: config.vpcEndpointIds }),
      ...(config.refreshWindowSeconds === undefined ? {} : { refreshWindowSeconds: config.refreshWindowSeconds }),
      ...(alarmTopic === undefined ? {} : { alarmTopic }),
    });

    const { broker } = this;
    new CfnOutput(this, 'ApiUrl', { value: broker.api.url, description: 'Base URL of the API stage' });
    new CfnOutput(this, 'FunctionName', { value: broker.fn.functionName, description: 'The broker function' });
    new CfnOutput(this, 'FunctionArn', {
      value: broker.fn.functionArn,
      description: 'The broker function (unqualified)',
    });
    new CfnOutput(this, 'TableName', { value: broker.table.tableName, description: 'The token cache table' });
    new CfnOutput(this, 'DashboardName', {
      value: broker.dashboard.dashboardName,
      description: "CloudWatch dashboard of the broker's metrics",
    });
    for (const name of broker.clientNames) {
      new CfnOutput(this, outputIdFor('AliasArn', name), {
        value: broker.aliasFor(name).functionArn,
        description: `Lambda alias for direct invocations of client ${name}`,
      });
      new CfnOutput(this, outputIdFor('AdminAliasArn', name), {
        value: broker.adminAliasFor(name).functionArn,
        description: `Lambda alias for invalidating client ${name}'s cached tokens by direct invoke`,
      });
      new CfnOutput(this, outputIdFor('TokenUrl', name), {
        value: broker.tokenUrlFor(name),
        description: `Token route of client ${name}`,
      });
    }
  }

  /** CloudWatch alarm actions publish only to a topic in the alarm's own region. */
  private alarmTopic(arn: string): sns.ITopic {
    const topicRegion = arn.split(':')[3];
    if (!Token.isUnresolved(this.region) && topicRegion !== this.region) {
      throw new ConfigError(
        `tokenBroker.alarmTopicArn: the topic is in ${topicRegion}, but alarms can only notify a topic in ` +
          `their own region (${this.region})`,
      );
    }
    return sns.Topic.fromTopicArn(this, 'AlarmTopic', arn);
  }
}
