import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { type CfnResource, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { account, identityGrantLines, inParent, type Json, list, type Statement, synth } from './support.js';

/*
 * An upgrade of a deployment made before the per-client aliases moved into nested stacks (a8b4b77), judged the
 * way CloudFormation runs an update: it creates added resources and replacements first and deletes removed and
 * replaced ones last, so a physical name held by both sides at once fails the update. The old side is the root
 * template of dd1efcd, synthesized by fixtures/synth-pre-nested.ts.
 */
const fixture = JSON.parse(
  readFileSync(new URL('./fixtures/pre-nested-layout.template.json', import.meta.url), 'utf8'),
);
const oldConfig = fixture.config as { clients: Record<string, Json> } & Json;
const oldClients = Object.keys(oldConfig.clients);

interface Resource {
  Type: string;
  Properties?: Json;
}
/** Every resource of a deployment by `<stack>/<logical id>` (`root` or the nested stack's logical id). */
type Deployment = Map<string, Resource>;

const masked = (resources: unknown) =>
  JSON.parse(JSON.stringify(resources).replace(/\b[0-9a-f]{64}\b/g, '<asset-hash>')) as Record<string, Resource>;

function deploymentOf(templates: Map<string, Template>, parent: Template): Deployment {
  const resources: Deployment = new Map();
  for (const [stack, template] of templates) {
    for (const [id, resource] of Object.entries(masked(template.toJSON().Resources))) {
      // A nested template's references to the parent arrive as parameters: named in the parent's terms.
      const properties = Object.fromEntries(
        Object.entries(resource.Properties ?? {}).map(([key, value]) => [key, inParent(parent, value)]),
      );
      resources.set(`${stack}/${id}`, { Type: resource.Type, Properties: properties });
    }
  }
  return resources;
}

const oldDeployment: Deployment = new Map(
  Object.entries(masked(fixture.Resources)).map(([id, resource]) => [`root/${id}`, resource]),
);

function newDeployment(tokenBroker: unknown) {
  const { stack, broker, template } = synth(tokenBroker);
  const templates = new Map([['root', template]]);
  for (const nested of broker.clientStacks) {
    const resource = nested.nestedStackResource as CfnResource;
    templates.set(Stack.of(resource).getLogicalId(resource), Template.fromStack(nested));
  }
  return { stack, template, templates, deployment: deploymentOf(templates, template) };
}

/** The properties whose change makes CloudFormation replace the resource (from each type's reference page). */
const replacedOnChange: Record<string, string[]> = {
  'AWS::DynamoDB::Table': ['TableName', 'KeySchema'],
  'AWS::Lambda::Alias': ['FunctionName', 'Name'],
  'AWS::Lambda::Function': ['FunctionName'],
  'AWS::Lambda::Permission': ['Action', 'FunctionName', 'Principal', 'SourceArn', 'SourceAccount'],
  'AWS::ApiGateway::Resource': ['ParentId', 'PathPart', 'RestApiId'],
  'AWS::ApiGateway::Stage': ['RestApiId', 'StageName'],
  'AWS::Logs::LogGroup': ['LogGroupName'],
};

/** What must be unique among the resources that exist at one time, per type. */
function physicalNameOf({ Type, Properties: p = {} }: Resource): string | undefined {
  const named = (...keys: string[]) => `${Type} ${keys.map((key) => JSON.stringify(p[key])).join(' ')}`;
  switch (Type) {
    case 'AWS::Lambda::Alias':
      return named('FunctionName', 'Name');
    case 'AWS::IAM::Policy':
      return named('Roles', 'Users', 'PolicyName');
    case 'AWS::ApiGateway::Resource':
      return named('ParentId', 'PathPart');
    case 'AWS::ApiGateway::Stage':
      return named('RestApiId', 'StageName');
    case 'AWS::DynamoDB::Table':
      return p.TableName === undefined ? undefined : named('TableName');
    case 'AWS::CloudWatch::Dashboard':
      return p.DashboardName === undefined ? undefined : named('DashboardName');
    case 'AWS::CloudWatch::Alarm':
      return p.AlarmName === undefined ? undefined : named('AlarmName');
    default:
      return undefined;
  }
}

function diff(before: Deployment, after: Deployment) {
  const removed = [...before.keys()].filter((key) => !after.has(key));
  const added = [...after.keys()].filter((key) => !before.has(key));
  const replaced = [...before.keys()].filter((key) => {
    const [old, updated] = [before.get(key), after.get(key)];
    if (old === undefined || updated === undefined) return false;
    if (old.Type !== updated.Type) return true;
    return (replacedOnChange[old.Type] ?? []).some(
      (property) => JSON.stringify(old.Properties?.[property]) !== JSON.stringify(updated.Properties?.[property]),
    );
  });
  // Names held while the update runs by what is going away, and by what it creates.
  const going = new Set([...removed, ...replaced].map((key) => physicalNameOf(before.get(key) as Resource)));
  const coming = [...added, ...replaced].map((key) => [key, physicalNameOf(after.get(key) as Resource)] as const);
  const conflicts = coming.filter(([, name]) => name !== undefined && going.has(name)).map(([key]) => key);
  return { removed, added, replaced, conflicts };
}

/**
 * Every grant to a config principal, as `<principal> <action> <alias or route>`: Lambda permissions on an alias,
 * Allow statements of the API's resource policy, identity policies of the deploying account's roles and users.
 */
function grantsOf(templates: Map<string, Template>, parent: Template, clients = oldConfig.clients): string[] {
  const grants: string[] = [];
  const arnOfName = new Map(
    Object.values(clients).flatMap((client) =>
      ['allowedPrincipals', 'adminPrincipals'].flatMap((field) =>
        ((client[field] as string[] | undefined) ?? []).map((arn) => [arn.split('/').at(-1) as string, arn]),
      ),
    ),
  );
  for (const template of templates.values()) {
    const aliases = template.findResources('AWS::Lambda::Alias');
    for (const permission of Object.values(template.findResources('AWS::Lambda::Permission'))) {
      const { Action, FunctionName, Principal } = permission.Properties;
      if (Principal === 'apigateway.amazonaws.com') continue;
      grants.push(`${Principal} ${Action} alias/${aliases[FunctionName.Ref]?.Properties.Name}`);
    }
    for (const api of Object.values(template.findResources('AWS::ApiGateway::RestApi'))) {
      for (const statement of api.Properties.Policy.Statement as Statement[]) {
        if (statement.Effect !== 'Allow') continue;
        const principals = list((statement.Principal as { AWS: string | string[] }).AWS);
        for (const principal of principals) {
          for (const resource of list(statement.Resource as string | string[])) {
            grants.push(`${principal} ${statement.Action} ${String(resource).replace('execute-api:', '')}`);
          }
        }
      }
    }
    for (const line of identityGrantLines(template, parent)) {
      const [name, action, target] = line.split(' ');
      // The stack's own roles (the function's, the trail's) are named by reference, not a config principal.
      const arn = arnOfName.get(name as string);
      if (arn !== undefined) grants.push(`${arn} ${action} ${target}`);
    }
  }
  return grants.sort();
}

/** The grants the configuration asks for: a token route and alias per fetching principal, the same for admins. */
function configuredGrants(clients: Record<string, Json>): string[] {
  return Object.entries(clients)
    .flatMap(([name, client]) => [
      ...((client.allowedPrincipals as string[] | undefined) ?? []).flatMap((arn) => [
        `${arn} execute-api:Invoke /v1/POST/clients/${name}/token`,
        `${arn} lambda:InvokeFunction alias/${name}`,
      ]),
      ...((client.adminPrincipals as string[] | undefined) ?? []).flatMap((arn) => [
        `${arn} execute-api:Invoke /v1/DELETE/clients/${name}/token`,
        `${arn} lambda:InvokeFunction alias/${name}_admin`,
      ]),
    ])
    .sort();
}

const tableKeys = (deployment: Deployment) =>
  [...deployment].filter(([, resource]) => resource.Type === 'AWS::DynamoDB::Table').map(([key]) => key);

describe('upgrading a deployment made before the nested-stack layout', () => {
  const oldTemplates = new Map([['root', Template.fromJSON({ Resources: fixture.Resources })]]);
  const oldGrants = grantsOf(oldTemplates, oldTemplates.get('root') as Template);

  it('starts from a synth of the old layout with every configured grant', () => {
    assert.match(fixture.commit, /^dd1efcd/);
    assert.deepEqual(oldGrants, configuredGrants(oldConfig.clients));
    const aliases = [...oldDeployment.values()].filter((resource) => resource.Type === 'AWS::Lambda::Alias');
    assert.equal(aliases.length, 1 + 2 * oldClients.length, 'api_gateway and two per client, all in the root');
  });

  it('fails without legacyRootAliases: the nested stacks create aliases the root still holds', () => {
    const { deployment } = newDeployment(oldConfig);
    const { conflicts } = diff(oldDeployment, deployment);
    const aliasNames = conflicts.map((key) => deployment.get(key)?.Properties?.Name).sort();
    assert.deepEqual(aliasNames, oldClients.flatMap((name) => [name, `${name}_admin`]).sort());
  });

  describe('with legacyRootAliases listing the old clients (one deploy)', () => {
    const upgraded = newDeployment({ ...oldConfig, legacyRootAliases: oldClients });
    const change = diff(oldDeployment, upgraded.deployment);

    it('keeps the table: same logical id, neither replaced nor removed', () => {
      const [table] = tableKeys(oldDeployment);
      assert.ok(table);
      assert.deepEqual(tableKeys(upgraded.deployment), [table]);
      assert.ok(!change.replaced.includes(table) && !change.removed.includes(table));
    });

    it('keeps every alias under its logical id, replaces none, and creates nothing under a name in use', () => {
      const oldAliases = [...oldDeployment].filter(([, r]) => r.Type === 'AWS::Lambda::Alias').map(([key]) => key);
      for (const alias of oldAliases) {
        assert.ok(upgraded.deployment.has(alias), `${alias} kept`);
        assert.ok(!change.replaced.includes(alias), `${alias} not replaced`);
      }
      assert.deepEqual(change.conflicts, []);
      // What is replaced is what every deploy replaces: nothing named.
      assert.deepEqual(change.replaced, []);
    });

    it('keeps every grant exactly as it was: the same permissions and resource-policy statements', () => {
      assert.deepEqual(grantsOf(upgraded.templates, upgraded.template), oldGrants);
      const permissions = (deployment: Deployment) =>
        [...deployment].filter(([, r]) => r.Type === 'AWS::Lambda::Permission').map(([key]) => key);
      for (const permission of permissions(oldDeployment)) {
        assert.ok(!change.removed.includes(permission), `${permission} stays while the update runs`);
      }
    });

    it('then adds a client in a nested stack, moving nothing and keeping every grant', () => {
      const partner = `arn:aws:iam::${account}:role/new-team`;
      const newClient = {
        ...oldConfig.clients.bwell,
        secretName: 'token-broker/new-team',
        allowedPrincipals: [partner],
      };
      const clients = { ...oldConfig.clients, 'new-team': newClient };
      const later = newDeployment({ ...oldConfig, clients, legacyRootAliases: oldClients });
      const next = diff(upgraded.deployment, later.deployment);
      assert.deepEqual(next.conflicts, []);
      assert.deepEqual(next.replaced, []);
      assert.deepEqual(
        next.removed.filter((key) => !/CurrentVersion|Deployment/.test(key)),
        [],
        'only the version and the API deployment every deploy replaces',
      );
      const newAlias = next.added.filter((key) => later.deployment.get(key)?.Type === 'AWS::Lambda::Alias');
      assert.equal(newAlias.length, 2);
      assert.ok(
        newAlias.every((key) => !key.startsWith('root/')),
        'the new client is in a nested stack',
      );
      assert.deepEqual(grantsOf(later.templates, later.template, clients), configuredGrants(clients));
    });
  });

  it('refuses a legacyRootAliases entry that is not a client, naming the field', () => {
    assert.throws(
      () => synth({ ...oldConfig, legacyRootAliases: ['bwell', 'gone'] }),
      /tokenBroker\.legacyRootAliases\[1\]: "gone" is not a client of the registry/,
    );
  });
});
