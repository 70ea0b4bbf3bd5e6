import { createHash } from 'node:crypto';
import { Annotations, Stack, Token, Validations } from 'aws-cdk-lib';
import type * as apigateway from 'aws-cdk-lib/aws-apigateway';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type { Construct } from 'constructs';
import { adminAliasOf, tokenPath } from '../lambdas/contract.js';
import { type ClientRegistry, configErrorOf } from '../lambdas/core/config.js';
import { type ClientStacks, clientStackIndexOf } from './client-stacks.js';

// IAM's limits on all the inline policies of one role or user together, in characters without white space.
const maxInlinePolicyChars = { role: 10_240, user: 2_048 } as const;
/*
 * What one inline policy of a grantee costs besides its resources: the document, and a statement each for
 * execute-api:Invoke and lambda:InvokeFunction. Rounded up from the documents CDK synthesizes.
 */
const inlinePolicyOverheadChars = 200;
// A Lambda function name CloudFormation generates is at most this long.
const maxFunctionNameChars = 64;

/**
 * The principals of the deploying account that the registry and the platform admins grant, imported once per place
 * their identity policy lives, so that the statements of one principal merge into one policy there. Keyed
 * `<nested stack index> <arn>`, or `all <arn>` for an admin of every client (in the broker's own stack).
 */
export class ClientGrants {
  private readonly imported = new Map<string, iam.IRole | iam.IUser>();

  constructor(
    private readonly scope: Construct,
    private readonly clientStacks: ClientStacks,
    private readonly legacyRootAliases: ReadonlySet<string>,
  ) {}

  /**
   * What a config principal is granted through. A role or user of the deploying account gets identity
   * policies, its imported construct shared by every grant in one nested stack so that its statements merge
   * into one policy there; it is named in no resource policy, which keeps the API's within 8,192 characters.
   * Account roots and principals of other accounts are named in the resource policies (the API's route
   * statement and a Lambda permission on the alias): another account's identities cannot be given policies
   * here. When the deploying account is unknown at synth (an env-agnostic stack), nobody can tell which case
   * applies: resource policies, which work either way, and a warning.
   */
  principalFor(
    clientName: string,
    field: 'allowedPrincipals' | 'adminPrincipals',
    index: number,
    arn: string,
  ): iam.IGrantable {
    // The grants of the old layout, unchanged: moving them to identity policies could leave a gap mid-update.
    if (this.legacyRootAliases.has(clientName)) return new iam.ArnPrincipal(arn);
    const deployingAccount = Stack.of(this.scope).account;
    if (Token.isUnresolved(deployingAccount)) {
      Annotations.of(this.scope).addWarningV2(
        '@token-broker/principal-account-unchecked',
        `tokenBroker.clients.${clientName}.${field}[${index}]: the stack has no account (env-agnostic), so ` +
          `whether ${arn} is in the deploying account cannot be checked. It is granted through resource ` +
          "policies (the API's and a Lambda permission), which count against the API policy's 8,192 characters; " +
          'give the stack an account (env) to grant principals of that account through identity policies.',
      );
      return new iam.ArnPrincipal(arn);
    }
    const kind = identityKindOf(arn, deployingAccount);
    if (kind === undefined) return new iam.ArnPrincipal(arn);
    const key = `${clientStackIndexOf(clientName)} ${arn}`;
    const imported = this.imported.get(key);
    if (imported !== undefined) return imported;
    const principal = importedIdentity(this.clientStacks.of(clientName), 'Grantee', arn, kind);
    this.imported.set(key, principal);
    return principal;
  }

  /**
   * The admins of every client. The wildcards are exact: `{client}` is the API's only path parameter and
   * DELETE its only other method on that route, and only admin aliases end in `_admin`, since client names
   * have no `_` (neither the client aliases nor `api_gateway` match).
   */
  grantPlatformAdmins(arns: readonly string[], api: apigateway.RestApi, fn: lambda.IFunction, stageName: string): void {
    const deployingAccount = Stack.of(this.scope).account;
    const problems: string[] = [];
    const admins = arns.map((arn) => ({ arn, kind: identityKindOf(arn, deployingAccount) }));
    admins.forEach(({ arn, kind }, index) => {
      const at = `tokenBroker.adminPrincipals[${index}]`;
      if (Token.isUnresolved(deployingAccount)) {
        problems.push(
          `${at}: the stack has no account (env-agnostic), so whether ${arn} can be given an identity policy ` +
            'cannot be checked: give the stack an account',
        );
      } else if (kind === undefined) {
        problems.push(
          `${at}: must be a role or user of the deploying account (${deployingAccount}), which gets an identity ` +
            "policy; list other principals under each client's adminPrincipals",
        );
      }
    });
    if (problems.length > 0) throw configErrorOf(problems);
    const everyRoute = api.arnForExecuteApi('DELETE', tokenPath('*'), stageName);
    const everyAdminAlias = `${fn.functionArn}:${adminAliasOf('*')}`;
    for (const { arn, kind } of admins) {
      if (kind === undefined) continue; // refused above
      const principal = importedIdentity(this.scope, 'PlatformAdmin', arn, kind);
      principal.addToPrincipalPolicy(
        new iam.PolicyStatement({ actions: ['execute-api:Invoke'], resources: [everyRoute] }),
      );
      principal.addToPrincipalPolicy(
        new iam.PolicyStatement({ actions: ['lambda:InvokeFunction'], resources: [everyAdminAlias] }),
      );
      for (const resource of [everyRoute, everyAdminAlias]) {
        Validations.of(principal).acknowledge({
          id: `AwsSolutions-IAM5[Resource::${nagRendering(Stack.of(this.scope).resolve(resource))}]`,
          reason:
            "The platform admins' wildcards name exactly every client's DELETE route and every admin alias: " +
            '{client} is the only path parameter, and only admin aliases end in _admin (client names have no _). ' +
            'Neither matches a token route, a client alias or the api_gateway alias.',
        });
      }
      this.imported.set(`all ${arn}`, principal);
    }
  }

  /**
   * An inline policy's name is unique per role or user, and CDK names one by its logical id, which is the same
   * in every deployment of this stack: two deployments granting one role would overwrite (and on deletion
   * remove) each other's policy. The stack name sets them apart.
   */
  nameGranteePolicies(): void {
    const stackName = Stack.of(this.scope).stackName;
    for (const [key, principal] of this.imported) {
      // Its one Policy, whose id depends on a feature flag (@aws-cdk/aws-iam:importedRoleStackSafeDefaultPolicyName).
      const policy = principal.node.children.find((child) => child instanceof iam.Policy);
      const cfnPolicy = policy?.node.defaultChild;
      if (!(cfnPolicy instanceof iam.CfnPolicy)) continue;
      const suffix = `-${key.split(' ')[0]}-${principal.node.id}`;
      cfnPolicy.policyName = `${stackName.slice(0, 128 - suffix.length)}${suffix}`;
    }
  }

  /** Fails synth where a grantee's identity policies would go over IAM's limit (see `checkGranteePolicySizes`). */
  checkPolicySizes(clients: ClientRegistry, stageName: string): void {
    checkGranteePolicySizes(this.policySizes(clients, stageName));
  }

  /**
   * The characters the identity policies of config principals will take, principal by principal: every route
   * and alias ARN they name, at the longest partition, region and function name this deployment could have,
   * and each policy's own overhead (one per nested stack the principal has grants in).
   */
  private policySizes(clients: ClientRegistry, stageName: string): GranteePolicySize[] {
    const stack = Stack.of(this.scope);
    const region = Token.isUnresolved(stack.region) ? 'ap-southeast-5' : stack.region;
    const arnPrefix = (service: string) => `arn:aws-us-gov:${service}:${region}:${stack.account}:`;
    const sizes = new Map<string, GranteePolicySize>();
    const grants = [
      ['allowedPrincipals', 'POST', (name: string) => name],
      ['adminPrincipals', 'DELETE', adminAliasOf],
    ] as const;
    for (const name of Object.keys(clients)) {
      const index = clientStackIndexOf(name);
      for (const [field, method, aliasOf] of grants) {
        for (const arn of clients[name]?.[field] ?? []) {
          if (!this.imported.has(`${index} ${arn}`)) continue;
          const route = `${arnPrefix('execute-api')}abcdefghij/${stageName}/${method}${tokenPath(name)}`;
          const alias = `${arnPrefix('lambda')}function:${'f'.repeat(maxFunctionNameChars)}:${aliasOf(name)}`;
          const size = sizes.get(arn) ?? { arn, resourceChars: 0, clients: new Set(), policies: new Set() };
          // Each resource is a quoted string followed by a comma.
          size.resourceChars += route.length + alias.length + 6;
          size.clients.add(name);
          size.policies.add(index);
          sizes.set(arn, size);
        }
      }
    }
    return [...sizes.values()];
  }
}

type IdentityKind = 'role' | 'user';

/**
 * Whether a principal can be given identity policies by this stack: a role or user of the deploying account
 * (account roots and other accounts' principals cannot). Undefined when it cannot.
 */
function identityKindOf(arn: string, deployingAccount: string): IdentityKind | undefined {
  const [, , , , account, resource = ''] = arn.split(':');
  const kind = resource.split('/')[0];
  return account === deployingAccount && (kind === 'role' || kind === 'user') ? kind : undefined;
}

/** The principal imported so that grants add to its identity policy; the id is stable per ARN. */
function importedIdentity(scope: Construct, prefix: string, arn: string, kind: IdentityKind): iam.IRole | iam.IUser {
  const id = `${prefix}-${createHash('sha256').update(arn).digest('hex').slice(0, 16)}`;
  return kind === 'role'
    ? iam.Role.fromRoleArn(scope, id, arn, { mutable: true })
    : iam.User.fromUserArn(scope, id, arn);
}

/**
 * A resolved CloudFormation value as cdk-nag names it in a finding (`<LogicalId>` for a Ref, `<LogicalId.Attr>`
 * for a GetAtt, Fn::Join joined), so that an acknowledgement names exactly that finding.
 */
function nagRendering(value: unknown): string {
  if (typeof value === 'string') return value;
  const node = value as Record<string, unknown>;
  if (Array.isArray(node['Fn::Join'])) {
    const [delimiter, parts] = node['Fn::Join'] as [string, unknown[]];
    return parts.map(nagRendering).join(delimiter);
  }
  if (Array.isArray(node['Fn::GetAtt'])) return `<${(node['Fn::GetAtt'] as string[]).join('.')}>`;
  if (typeof node.Ref === 'string') return `<${node.Ref}>`;
  return JSON.stringify(value);
}

interface GranteePolicySize {
  arn: string;
  resourceChars: number;
  clients: Set<string>;
  /** The nested stacks it has grants in: one inline policy each. */
  policies: Set<number>;
}

/**
 * A role or user granted too many clients through identity policies would fail the deploy: IAM refuses the
 * inline policy that takes it over its limit, and CloudFormation rolls back. Counted at the longest ARNs this
 * deployment could have, and without the principal's own other inline policies, which synth cannot see.
 */
function checkGranteePolicySizes(sizes: readonly GranteePolicySize[]): void {
  const problems: string[] = [];
  for (const { arn, resourceChars, clients, policies } of sizes) {
    const kind = arn.split(':')[5]?.startsWith('user/') ? 'user' : 'role';
    const chars = resourceChars + policies.size * inlinePolicyOverheadChars;
    if (chars > maxInlinePolicyChars[kind]) {
      problems.push(
        `${arn}: its grants on ${clients.size} clients would take up to ${chars} characters of inline policy, ` +
          `over IAM's limit of ${maxInlinePolicyChars[kind]} per ${kind}, and the deploy would fail. List it ` +
          'under fewer clients (each client costs about 250 characters), or split the clients over deployments',
      );
    }
  }
  if (problems.length > 0) throw configErrorOf(problems);
}
