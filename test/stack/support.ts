import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { App, type Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { parseTokenBrokerContext } from '../../lib/context.js';
import { TokenBrokerStack } from '../../lib/token-broker-stack.js';

/** Shared by the stack tests that grant callers and read the resulting policies. */
export const cdkJson = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8'));
export const shipped = cdkJson.context.tokenBroker;
export const bwell = shipped.clients.bwell;
export const account = '111111111111';
export const env = { account, region: 'us-east-1' };

export type Json = Record<string, unknown>;
export interface Statement {
  Sid?: string;
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Principal?: unknown;
  Condition?: Json;
}

/** The stack for a `tokenBroker` context, without bundling; the template is synthesized on first use, after grants. */
export function synth(tokenBroker: unknown) {
  const app = new App({ context: { ...cdkJson.context, 'aws:cdk:bundling-stacks': [], tokenBroker } });
  const stack = new TokenBrokerStack(app, 'TokenBroker', { config: parseTokenBrokerContext(tokenBroker), env });
  return {
    app,
    stack,
    broker: stack.broker,
    get template() {
      return Template.fromStack(stack);
    },
  };
}

export function logicalIdOf(
  template: Template,
  type: string,
  predicate: (props: Json) => boolean = () => true,
): string {
  const ids = Object.entries(template.findResources(type))
    .filter(([, r]) => predicate(r.Properties ?? {}))
    .map(([id]) => id);
  assert.equal(ids.length, 1, `expected one ${type}, found ${ids.length}`);
  return ids[0] as string;
}

export const list = (value: string | string[]) => (Array.isArray(value) ? value : [value]);

export function apiPolicy(template: Template): Statement[] {
  const api = Object.values(template.findResources('AWS::ApiGateway::RestApi'))[0];
  return api?.Properties.Policy.Statement as Statement[];
}

/** The identity-policy statements attached to the test's caller role (the one assumed by the account root). */
export function callerStatements(template: Template, stack: Stack): Statement[] {
  const roleId = logicalIdOf(template, 'AWS::IAM::Role', (p) => JSON.stringify(p).includes(':root'));
  return Object.values(template.findResources('AWS::IAM::Policy'))
    .filter((p) => JSON.stringify(p.Properties.Roles).includes(`"${roleId}"`))
    .flatMap((p) => stack.resolve(p.Properties.PolicyDocument.Statement) as Statement[]);
}
