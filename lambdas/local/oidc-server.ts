/**
 * A local OpenID provider (panva's `oidc-provider`) issuing client-credentials tokens, used by the tests
 * (over TLS, with the certificate test/run-tests.ts generates) and by the local dev server (plain http on
 * 127.0.0.1; never expose it).
 *
 * Like Amazon Cognito, whose issuer lives on cognito-idp.amazonaws.com while its token endpoint lives on
 * <domain>.amazoncognito.com, the discovery document advertises a token endpoint on a different host than
 * the issuer (`localhost` vs `127.0.0.1` by default; one listener serves both names).
 */
import { generateKeyPairSync, type JsonWebKey, randomBytes } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { listenOnLoopback } from './listen.js';

export interface LocalSecretClient {
  clientId: string;
  clientSecret: string;
  authMethod: 'client_secret_post' | 'client_secret_basic';
  scopes: string[];
}

/** SMART Backend Services: the client authenticates with a JWT signed by the key whose public half is here. */
export interface LocalKeyClient {
  clientId: string;
  /** The key the provider verifies assertions with; or, instead, `jwksUri`. */
  publicJwk?: JsonWebKey & { kid: string };
  /** Where the provider fetches the client's keys from (`jwks_uri`), as Epic registers clients. */
  jwksUri?: string;
  authMethod: 'private_key_jwt';
  scopes: string[];
}

export type LocalOidcClient = LocalSecretClient | LocalKeyClient;

export interface LocalOidcServer {
  /** `<scheme>://<issuerHost>:<port>` */
  issuer: string;
  /** The issuer's `/.well-known/openid-configuration`. */
  wellKnownUrl: string;
  /** The same metadata at RFC 8414's location, `/.well-known/oauth-authorization-server`. */
  oauthMetadataUrl: string;
  /**
   * A SMART configuration for a FHIR server at `<issuer>/fhir/r4`: its token endpoint and methods, and the
   * OpenID issuer, as SMART App Launch 2 servers (Epic, Oracle Health) publish it.
   */
  smartConfigurationUrl: string;
  /** The token endpoint the discovery document advertises (on `tokenHost`, not the issuer host). */
  tokenEndpoint: string;
  /** POST requests that reached the token endpoint, whatever their outcome. */
  tokenRequests(): number;
  /** GET requests for any of the three metadata documents. */
  metadataRequests(): number;
  /** Header and claims of the last client assertion (private_key_jwt) the token endpoint received. */
  lastClientAssertion(): { header: Record<string, unknown>; claims: Record<string, unknown> } | undefined;
  /** The `audience` and `resource` form parameters of the last token request, as received. */
  lastTargetParameters(): { audience?: unknown; resource?: unknown };
  close(): Promise<void>;
}

export interface LocalOidcServerOptions {
  clients: LocalOidcClient[];
  /** Serve https with this key and certificate; without it, plain http (local dev server only). */
  tls?: { key: string; cert: string };
  /** Host name in the issuer identifier; default `localhost`. */
  issuerHost?: string;
  /** Host name of the advertised token endpoint; default `127.0.0.1`. */
  tokenHost?: string;
  /** Port on 127.0.0.1; default 0 (a free port). */
  port?: number;
  /** Lifetime of issued access tokens (`expires_in`); default 3600. */
  accessTokenTtlSeconds?: number;
  /**
   * RFC 8707 resource servers by resource indicator, each with the scopes it accepts. A token requested for
   * one is a JWT whose `aud` is the indicator; any other `resource` is refused with invalid_target.
   */
  resourceServers?: Readonly<Record<string, { scope: string }>>;
  /** Told about errors the provider answered with a 500; by default they are dropped (the provider stays quiet). */
  onServerError?: (error: Error) => void;
}

const tokenPath = '/token';
const discoveryPath = '/.well-known/openid-configuration';
const oauthMetadataPath = '/.well-known/oauth-authorization-server';
const smartConfigurationPath = '/fhir/r4/.well-known/smart-configuration';

/*
 * Minimal structural types for the parts of oidc-provider (a Koa application) used here: the package ships
 * no type declarations (they live in @types/oidc-provider, which is not installed).
 */
interface KoaContext {
  req: IncomingMessage;
  method: string;
  path: string;
  status: number;
  body: unknown;
  type: string;
  headers: Record<string, string | string[] | undefined>;
  /** Set by the provider on its routes. */
  oidc?: { client?: { clientAuthMethod: string }; body?: Record<string, unknown> };
}
type KoaMiddleware = (ctx: KoaContext, next: () => Promise<void>) => Promise<void>;
interface OidcProvider {
  silent: boolean;
  use(middleware: KoaMiddleware): void;
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  on(event: 'server_error', listener: (ctx: KoaContext, error: Error) => void): void;
}
type OidcProviderConstructor = new (issuer: string, configuration: Record<string, unknown>) => OidcProvider;

interface StoredArtifact {
  payload: Record<string, unknown>;
  expiresAt: number | undefined;
}

/** Per-server in-memory storage, so the provider does not warn about its development-only default adapter. */
function memoryAdapterFactory() {
  const store = new Map<string, StoredArtifact>();
  return (model: string) => {
    const key = (id: string) => `${model}:${id}`;
    const live = (id: string): Record<string, unknown> | undefined => {
      const entry = store.get(key(id));
      if (!entry) return undefined;
      if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
        store.delete(key(id));
        return undefined;
      }
      return entry.payload;
    };
    return {
      async upsert(id: string, payload: Record<string, unknown>, expiresIn?: number) {
        const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : undefined;
        store.set(key(id), { payload, expiresAt });
      },
      async find(id: string) {
        return live(id);
      },
      async findByUid(uid: string) {
        for (const [k, entry] of store) {
          if (k.startsWith(`${model}:`) && entry.payload.uid === uid) return live(k.slice(model.length + 1));
        }
        return undefined;
      },
      async findByUserCode(userCode: string) {
        for (const [k, entry] of store) {
          if (k.startsWith(`${model}:`) && entry.payload.userCode === userCode) return live(k.slice(model.length + 1));
        }
        return undefined;
      },
      async consume(id: string) {
        const payload = live(id);
        if (payload) payload.consumed = Math.floor(Date.now() / 1000);
      },
      async destroy(id: string) {
        store.delete(key(id));
      },
      async revokeByGrantId(grantId: string) {
        for (const [k, entry] of store) {
          if (k.startsWith(`${model}:`) && entry.payload.grantId === grantId) store.delete(k);
        }
      },
    };
  };
}

/** A fresh RS256 signing key, so the provider does not fall back to (and warn about) its development keys. */
function generatedJwks() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { keys: [{ ...jwk, kid: randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' }] };
}

function hostForUrl(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

async function loadProvider(): Promise<{ Provider: OidcProviderConstructor; InvalidTarget: new () => Error }> {
  // Through a variable so TypeScript does not look for the (absent) declaration file; see OidcProvider above.
  const specifier = 'oidc-provider';
  const module = (await import(specifier)) as {
    default: OidcProviderConstructor;
    errors: { InvalidTarget: new () => Error };
  };
  return { Provider: module.default, InvalidTarget: module.errors.InvalidTarget };
}

export async function startOidcServer(options: LocalOidcServerOptions): Promise<LocalOidcServer> {
  const { Provider, InvalidTarget } = await loadProvider();
  const scheme = options.tls ? 'https' : 'http';

  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => {
    res.statusCode = 503;
    res.end();
  };
  let tokenRequests = 0;
  let metadataRequests = 0;
  let lastAssertion: ReturnType<LocalOidcServer['lastClientAssertion']>;
  let lastTargets: ReturnType<LocalOidcServer['lastTargetParameters']> = {};
  const resourceServers = options.resourceServers ?? {};
  // The provider serves its metadata at the OpenID location only; the other two are answered from it.
  const smartRequests = new WeakSet<IncomingMessage>();
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', 'http://placeholder').pathname;
    if (req.method === 'POST' && path === tokenPath) tokenRequests += 1;
    if (req.method === 'GET' && [discoveryPath, oauthMetadataPath, smartConfigurationPath].includes(path)) {
      metadataRequests += 1;
    }
    if (req.method === 'GET' && (path === oauthMetadataPath || path === smartConfigurationPath)) {
      if (path === smartConfigurationPath) smartRequests.add(req);
      req.url = discoveryPath;
    }
    handler(req, res);
  };
  const server: Server = options.tls
    ? createHttpsServer({ key: options.tls.key, cert: options.tls.cert }, onRequest)
    : createHttpServer(onRequest);
  const port = await listenOnLoopback(server, options.port ?? 0);

  const issuer = `${scheme}://${hostForUrl(options.issuerHost ?? 'localhost')}:${port}`;
  const tokenEndpoint = `${scheme}://${hostForUrl(options.tokenHost ?? '127.0.0.1')}:${port}${tokenPath}`;
  const scopes = [...new Set(options.clients.flatMap((client) => client.scopes))];

  const provider = new Provider(issuer, {
    adapter: memoryAdapterFactory(),
    jwks: generatedJwks(),
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    clients: options.clients.map((client) => ({
      client_id: client.clientId,
      ...(client.authMethod === 'private_key_jwt'
        ? client.jwksUri === undefined
          ? { jwks: { keys: [client.publicJwk] } }
          : { jwks_uri: client.jwksUri }
        : { client_secret: client.clientSecret }),
      token_endpoint_auth_method: client.authMethod,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: client.scopes.join(' '),
    })),
    enabledJWA: { clientAuthSigningAlgValues: ['RS256', 'RS384', 'PS256', 'PS384', 'ES256', 'ES384'] },
    scopes,
    features: {
      clientCredentials: { enabled: true },
      devInteractions: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => undefined,
        useGrantedResource: async () => false,
        getResourceServerInfo: async (_ctx: KoaContext, indicator: string) => {
          const server = Object.hasOwn(resourceServers, indicator) ? resourceServers[indicator] : undefined;
          if (server === undefined) throw new InvalidTarget();
          return {
            scope: server.scope,
            audience: indicator,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    routes: { token: tokenPath },
    /*
     * The provider refuses to fetch a client's jwks_uri from special-use addresses (its SSRF guard, a dispatcher it
     * passes in). Every server of this local world is on loopback, the hosted JWKS stand-in too, so the guard is
     * left out here, and only for the URLs the clients were registered with.
     */
    fetch: (url: string | URL, init: RequestInit & { dispatcher?: unknown }) => {
      const registered = options.clients.some((client) => 'jwksUri' in client && client.jwksUri === String(url));
      if (!registered) return fetch(url, init);
      const { dispatcher: _guard, ...rest } = init;
      return fetch(url, rest);
    },
    ttl: { ClientCredentials: options.accessTokenTtlSeconds ?? 3600 },
    // Defaults for flows this server does not offer print "you SHOULD/MUST change" notices when called.
    clientBasedCORS: () => false,
    findAccount: async () => undefined,
    renderError: async (ctx: KoaContext, out: Record<string, string>) => {
      ctx.type = 'json';
      ctx.body = out;
    },
  });
  // Koa would print unhandled errors to stderr; the provider's own error handler reports 500s as events.
  provider.silent = true;
  provider.on('server_error', (_ctx, error) => options.onServerError?.(error));
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.method === 'GET' && ctx.path === discoveryPath && ctx.status === 200 && isRecord(ctx.body)) {
      ctx.body = { ...ctx.body, token_endpoint: tokenEndpoint };
      if (smartRequests.has(ctx.req)) ctx.body = smartConfigurationOf(ctx.body as Record<string, unknown>);
    }
    if (ctx.method === 'POST' && ctx.path === tokenPath) {
      const body = ctx.oidc?.body ?? {};
      lastTargets = {
        ...(body.audience === undefined ? {} : { audience: body.audience }),
        ...(body.resource === undefined ? {} : { resource: body.resource }),
      };
      const assertion = body.client_assertion;
      if (typeof assertion === 'string') lastAssertion = decodeJwt(assertion);
      if (ctx.status === 200) enforceStrictTokenRules(ctx);
    }
  });
  handler = provider.callback();

  return {
    issuer,
    wellKnownUrl: `${issuer}${discoveryPath}`,
    oauthMetadataUrl: `${issuer}${oauthMetadataPath}`,
    smartConfigurationUrl: `${issuer}${smartConfigurationPath}`,
    tokenEndpoint,
    tokenRequests: () => tokenRequests,
    metadataRequests: () => metadataRequests,
    lastClientAssertion: () => lastAssertion,
    lastTargetParameters: () => lastTargets,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}

/**
 * oidc-provider is lenient where the broker must not rely on leniency, so successful token responses are
 * re-checked (the unreturned token is simply dropped):
 * - it accepts client_secret_basic and client_secret_post interchangeably whatever the client registered;
 *   here a client must authenticate with the method it is registered with, or gets 401 invalid_client;
 * - it silently drops requested scopes that the server does not know; here (as with Cognito) that is
 *   400 invalid_scope.
 */
function enforceStrictTokenRules(ctx: KoaContext): void {
  const registered = ctx.oidc?.client?.clientAuthMethod;
  const usedBasic = ctx.headers.authorization !== undefined;
  if ((registered === 'client_secret_basic' && !usedBasic) || (registered === 'client_secret_post' && usedBasic)) {
    ctx.status = 401;
    ctx.body = {
      error: 'invalid_client',
      error_description: `client authentication failed: the client is registered for ${registered}`,
    };
    return;
  }
  // The parsed form as received: the provider rewrites `params.scope` once it has dropped unknown scopes.
  const requested = ctx.oidc?.body?.scope;
  const granted = new Set(isRecord(ctx.body) && typeof ctx.body.scope === 'string' ? ctx.body.scope.split(' ') : []);
  const dropped = typeof requested === 'string' ? requested.split(' ').filter((s) => s && !granted.has(s)) : [];
  if (dropped.length > 0) {
    ctx.status = 400;
    ctx.body = {
      error: 'invalid_scope',
      error_description: 'requested scope is not allowed',
      scope: dropped.join(' '),
    };
  }
}

/** SMART App Launch 2 section 2.1: what a backend-services server publishes about itself. */
function smartConfigurationOf(metadata: Record<string, unknown>): Record<string, unknown> {
  return {
    issuer: metadata.issuer,
    jwks_uri: metadata.jwks_uri,
    token_endpoint: metadata.token_endpoint,
    token_endpoint_auth_methods_supported: metadata.token_endpoint_auth_methods_supported,
    token_endpoint_auth_signing_alg_values_supported: metadata.token_endpoint_auth_signing_alg_values_supported,
    grant_types_supported: ['client_credentials'],
    scopes_supported: metadata.scopes_supported,
    capabilities: ['client-confidential-symmetric', 'client-confidential-asymmetric', 'permission-v2'],
  };
}

function decodeJwt(jwt: string): { header: Record<string, unknown>; claims: Record<string, unknown> } | undefined {
  const [header, claims] = jwt.split('.');
  try {
    const part = (text: string | undefined) => JSON.parse(Buffer.from(text ?? '', 'base64url').toString('utf8'));
    return { header: part(header), claims: part(claims) };
  } catch {
    return undefined;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !Buffer.isBuffer(value);
}
