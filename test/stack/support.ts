import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { ConfigError } from '../../lambdas/core/config.js';
import { parseTokenBrokerContext } from '../../lib/context.js';
import type { TokenBroker } from '../../lib/token-broker.js';
import { TokenBrokerStack } from '../../lib/token-broker-stack.js';

/** Shared by the stack tests that grant callers and read the resulting policies. */
export const cdkJson = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8'));
export const shipped = cdkJson.context.tokenBroker;
export const bwell = shipped.clients.bwell;
export const account = '111111111111';
export const env = { account, region: 'us-east-1' };

/** The KMS keys of the deploying account that the client fixtures name. */
export const kmsKeys = {
  /** A customer managed key a client secret is encrypted under (`secretKmsKeyArn`). */
  secret: `arn:aws:kms:us-east-1:${account}:key/1234abcd-12ab-34cd-56ef-1234567890ab`,
  /** The key a private_key_jwt client signs its assertions with (`signingKeyArn`). */
  signing: `arn:aws:kms:us-east-1:${account}:key/0f0e0d0c-1111-2222-3333-444455556666`,
  /** A key only published in the client's JWKS (`jwksKeyArns`): the next one, before a rotation. */
  published: `arn:aws:kms:us-east-1:${account}:key/0f0e0d0c-7777-8888-9999-000011112222`,
} as const;

/** An Epic-style private_key_jwt client: signs with one KMS key and publishes another, so a hosted JWKS exists. */
export const epicClient = {
  wellKnownUrl: 'https://fhir.epic.example/.well-known/smart-configuration',
  secretName: 'token-broker/epic',
  scopes: ['system/Patient.read'],
  authMethod: 'private_key_jwt',
  signingKeyArn: kmsKeys.signing,
  jwksKeyArns: [kmsKeys.published],
};

/** A secretless client: its assertion is a web-identity token STS signs, which Entra accepts by federation. */
export const entraClient = {
  wellKnownUrl: 'https://login.microsoftonline.com/tenant/v2.0/.well-known/openid-configuration',
  secretName: 'token-broker/entra',
  scopes: ['api://fhir/.default'],
  authMethod: 'private_key_jwt',
  webIdentityAudience: 'api://AzureADTokenExchange',
};

/** The message of the ConfigError a tokenBroker context fails with; fails the test when it passes. */
export function problemsOf(raw: unknown): string {
  try {
    parseTokenBrokerContext(raw);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.message;
  }
  assert.fail('expected a ConfigError');
}

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

/** The template of the nested stack that holds a client's aliases and their grants. */
export function clientTemplate(broker: TokenBroker, clientName: string): Template {
  return Template.fromStack(Stack.of(broker.aliasFor(clientName)));
}

/** The parent template and every nested one of the broker. */
export function allTemplates(parent: Template, broker: TokenBroker): Template[] {
  return [parent, ...broker.clientStacks.map((nested) => Template.fromStack(nested))];
}

/**
 * A value of a nested template in the parent's terms: `{Ref: <parameter>}` becomes what the parent passes
 * for that parameter (references to the parent's resources arrive as parameters).
 */
export function inParent(parent: Template, value: unknown): unknown {
  const ref = (value as { Ref?: unknown } | undefined)?.Ref;
  if (typeof ref !== 'string') return value;
  for (const nested of Object.values(parent.findResources('AWS::CloudFormation::Stack'))) {
    const passed = (nested.Properties.Parameters as Json | undefined)?.[ref];
    if (passed !== undefined) return passed;
  }
  return value;
}

export interface AliasView {
  name: string;
  functionName: unknown;
  functionVersion: unknown;
}

/** Every Lambda alias in the parent and nested stacks, its function and version in the parent's terms. */
export function aliasesOf(parent: Template, broker: TokenBroker): AliasView[] {
  return allTemplates(parent, broker)
    .flatMap((template) => Object.values(template.findResources('AWS::Lambda::Alias')))
    .map((alias) => ({
      name: alias.Properties.Name as string,
      functionName: inParent(parent, alias.Properties.FunctionName),
      functionVersion: inParent(parent, alias.Properties.FunctionVersion),
    }));
}

/** The logical id of a client's alias (`bwell`, `bwell_admin`) in its nested stack's template. */
export function aliasIdIn(template: Template, aliasName: string): string {
  return logicalIdOf(template, 'AWS::Lambda::Alias', (p) => p.Name === aliasName);
}

/**
 * A parent template's reference to a nested stack's output (`Fn::GetAtt [<stack>, Outputs.<name>]`), as the
 * nested template defines that output: how a grant in the parent names a client's alias.
 */
export function throughNestedOutput(broker: TokenBroker, value: unknown): unknown {
  const getAtt = (value as { 'Fn::GetAtt'?: [string, string] } | undefined)?.['Fn::GetAtt'];
  if (getAtt === undefined || !getAtt[1].startsWith('Outputs.')) return value;
  const name = getAtt[1].slice('Outputs.'.length);
  for (const nested of broker.clientStacks) {
    const outputs = (Template.fromStack(nested).toJSON().Outputs ?? {}) as Record<string, { Value: unknown }>;
    if (outputs[name] !== undefined) return outputs[name].Value;
  }
  return value;
}

/** Lambda permissions for principals other than API Gateway, in every template, as [action, function, principal]. */
export function invokePermissions(templates: Template[]): unknown[][] {
  return templates
    .flatMap((template) => Object.values(template.findResources('AWS::Lambda::Permission')))
    .map((p) => p.Properties)
    .filter((p) => p.Principal !== 'apigateway.amazonaws.com')
    .map((p) => [p.Action, p.FunctionName, p.Principal])
    .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
}

/**
 * The identity policies a template attaches to roles and users by name, as "name action resource" lines: an
 * alias as `alias/<name>`, an execute-api ARN as its route (`/v1/POST/clients/bwell/token`) after checking that
 * it is of the broker's API in the deploying account.
 */
export function identityGrantLines(template: Template, parent: Template): string[] {
  const aliases = template.findResources('AWS::Lambda::Alias');
  const apiId = logicalIdOf(parent, 'AWS::ApiGateway::RestApi');
  const label = (resource: unknown): string => {
    const ref = (resource as { Ref?: string }).Ref;
    if (ref !== undefined && aliases[ref] !== undefined) return `alias/${aliases[ref].Properties.Name}`;
    const join = (resource as { 'Fn::Join'?: [string, unknown[]] })['Fn::Join']?.[1];
    if (join?.[0] === `arn:aws:execute-api:us-east-1:${account}:`) {
      assert.deepEqual(inParent(parent, join[1]), { Ref: apiId }, 'the route is on the broker API');
      return String(join[2]);
    }
    return JSON.stringify(resource);
  };
  return Object.values(template.findResources('AWS::IAM::Policy'))
    .flatMap((policy) => {
      const names = [
        ...((policy.Properties.Roles as string[]) ?? []),
        ...((policy.Properties.Users as string[]) ?? []),
      ];
      return (policy.Properties.PolicyDocument.Statement as Statement[]).flatMap((statement) =>
        names.flatMap((name) =>
          list(statement.Action).flatMap((action) =>
            (Array.isArray(statement.Resource) ? statement.Resource : [statement.Resource]).map(
              (resource) => `${name} ${action} ${label(resource)}`,
            ),
          ),
        ),
      );
    })
    .sort();
}

/** Another account, for principals outside the deploying one. */
export const outsiderAccount = '222222222222';

/**
 * A platform team's registry of `count` clients (team-000, team-001, ...), each with two fetching roles and one
 * admin role of the deploying account; with `crossAccountEvery`, every n-th client's second role is another
 * account's. Shared by test/stack/scale.test.ts and test/bench/synth-scale.ts.
 */
export function teamRegistry(count: number, crossAccountEvery?: number) {
  return Object.fromEntries(
    Array.from({ length: count }, (_, i) => {
      const name = `team-${String(i).padStart(3, '0')}`;
      const outsider = crossAccountEvery !== undefined && i % crossAccountEvery === 0;
      return [
        name,
        {
          wellKnownUrl: `https://login.${name}.example/.well-known/openid-configuration`,
          secretName: `token-broker/${name}`,
          scopes: ['read', 'write'],
          defaultScope: 'read',
          allowedPrincipals: [
            `arn:aws:iam::${account}:role/${name}-service`,
            outsider
              ? `arn:aws:iam::${outsiderAccount}:role/${name}-partner`
              : `arn:aws:iam::${account}:role/${name}-batch`,
          ],
          adminPrincipals: [`arn:aws:iam::${account}:role/${name}-ops`],
        },
      ];
    }),
  );
}
