// A real OAuth 2.0 / OpenID Connect authorization server (panva's `oidc-provider`) for the
// Rust integration tests. Listens on 127.0.0.1 only.
//
//   node oidc-provider-server.mjs [--port N] [--exit-on-stdin-close]
//   (N = 0, the default, picks an ephemeral port)
//
// When ready it prints exactly one line of JSON to stdout: {"issuer": "...", "port": N}.
// Everything else (oidc-provider's notices and warnings included) goes to stderr.
//
// Clients:
//   app      secret app-secret  client_secret_basic  grant client_credentials (obtains tokens)
//   rs-basic secret rs-secret   client_secret_basic  (resource server: introspection)
//   rs-post  secret rs-secret   client_secret_post   (resource server: introspection)
//
// Token requests (POST <token_endpoint>, grant_type=client_credentials, as `app`):
//   scope=...                    any space-separated scopes (SMART scopes included)
//   resource=https://fhir.test/r4  -> RFC 9068 JWT access token (typ at+jwt, RS256, aud = resource);
//                                   without `resource` the token is OPAQUE (introspect it).
//   patient=123                  -> `patient` claim in the token (JWT payload / introspection);
//                                   likewise `encounter` and `fhirUser`
//   expires_in=N                 -> token lifetime in seconds (default 600)
//
// Extra endpoint: GET /__stats -> {"introspections": N, "tokens": N, "revocations": N}
// (POSTs that reached each endpoint, whatever their outcome).

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider, { errors } from 'oidc-provider';

// oidc-provider prints NOTICEs with console.info (stdout): keep stdout for the ready line.
console.log = console.error;
console.info = console.error;
console.debug = console.error;

function argument(name, fallback) {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 && index + 1 < process.argv.length ? process.argv[index + 1] : fallback;
}

const requestedPort = Number(argument('port', '0'));
if (!Number.isInteger(requestedPort) || requestedPort < 0 || requestedPort > 65535) {
  console.error(`invalid --port ${argument('port')}`);
  process.exit(2);
}

export const FHIR_AUDIENCE = 'https://fhir.test/r4';

// Scopes the provider knows (advertised as scopes_supported). Unknown scopes are accepted
// too for client_credentials (oidc-provider only checks *known* scopes against a client's
// `scope` allow-list, and the clients here have none).
const SMART_SCOPES = [
  'openid', 'offline_access', 'fhirUser', 'profile', 'launch', 'launch/patient',
  'launch/encounter', 'online_access',
  'patient/*.rs', 'patient/*.read', 'patient/*.cruds', 'patient/*.*',
  'patient/Observation.rs', 'patient/Observation.read', 'patient/Patient.rs',
  'patient/Patient.read', 'patient/Condition.rs', 'patient/MedicationRequest.rs',
  'user/*.rs', 'user/*.read', 'user/*.cruds', 'user/*.*', 'user/Observation.rs',
  'user/Patient.rs', 'system/*.rs', 'system/*.read', 'system/*.cruds', 'system/*.*',
  'system/Observation.rs', 'system/Patient.rs',
];

// SMART launch context: token-request parameters copied into the access token as claims.
const CONTEXT_PARAMS = ['patient', 'encounter', 'fhirUser'];

const stats = { introspections: 0, tokens: 0, revocations: 0 };

// The http.Server comes first: its port is the issuer's.
let handler = (req, res) => {
  res.statusCode = 503;
  res.end();
};
const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/__stats') {
    res.setHeader('content-type', 'application/json');
    res.setHeader('cache-control', 'no-store');
    res.end(JSON.stringify(stats));
    return;
  }
  handler(req, res);
});
// Tests restart the provider on the same port: don't keep idle keep-alive sockets around.
server.keepAliveTimeout = 1000;

await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(requestedPort, '127.0.0.1', resolve);
});
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'RS256', kid: `rsa-${port}-${Date.now()}` };

// The raw (unfiltered) token request body: client_credentials only keeps `scope` and
// `resource` in ctx.oidc.params, `extraParams` only applies to authorization requests.
function body(ctx) {
  return ctx?.oidc?.body ?? {};
}

function requestedTtl(ctx, fallback) {
  const value = Number(body(ctx).expires_in);
  return Number.isInteger(value) && value > 0 ? value : fallback;
}

const configuration = {
  clients: [
    {
      client_id: 'app',
      client_secret: 'app-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      // oidc-provider 9 has no separate introspection/revocation auth method metadata:
      // those endpoints authenticate with token_endpoint_auth_method. Note that it treats
      // client_secret_basic and client_secret_post as interchangeable: either client may
      // present its secret either way.
      client_id: 'rs-basic',
      client_secret: 'rs-secret',
      grant_types: [],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: 'rs-post',
      client_secret: 'rs-secret',
      grant_types: [],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_post',
    },
  ],
  clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  scopes: SMART_SCOPES,
  claims: { openid: ['sub'], fhirUser: ['fhirUser'] },
  // Only used by authorization requests; the token endpoint reads `patient` from the raw
  // body in extraTokenClaims below.
  extraParams: CONTEXT_PARAMS,
  async extraTokenClaims(ctx) {
    const claims = {};
    for (const name of CONTEXT_PARAMS) {
      const value = body(ctx)[name];
      if (typeof value === 'string' && value !== '') {
        claims[name] = value;
      }
    }
    return Object.keys(claims).length ? claims : undefined;
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => undefined,
      useGrantedResource: async () => false,
      async getResourceServerInfo(ctx, resourceIndicator) {
        if (resourceIndicator !== FHIR_AUDIENCE) {
          throw new errors.InvalidTarget();
        }
        // The token keeps only the requested scopes the resource server lists: list every
        // requested one, so a test gets exactly what it asked for.
        const requested = (ctx.oidc.params.scope ?? '').split(' ').filter(Boolean);
        return {
          scope: [...new Set([...SMART_SCOPES, ...requested])].join(' '),
          audience: FHIR_AUDIENCE,
          accessTokenFormat: 'jwt',
          accessTokenTTL: requestedTtl(ctx, 600),
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  ttl: {
    AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL ?? requestedTtl(ctx, 600),
    ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? requestedTtl(ctx, 600),
    Grant: 600,
    Interaction: 600,
    Session: 600,
    IdToken: 600,
    AuthorizationCode: 60,
  },
  renderError(ctx, out) {
    ctx.type = 'json';
    ctx.body = out;
  },
};

const provider = new Provider(issuer, configuration);
provider.proxy = false;

const introspectionPath = provider.pathFor('introspection');
const tokenPath = provider.pathFor('token');
const revocationPath = provider.pathFor('revocation');

provider.use(async (ctx, next) => {
  if (ctx.method === 'POST') {
    if (ctx.path === introspectionPath) stats.introspections += 1;
    else if (ctx.path === tokenPath) stats.tokens += 1;
    else if (ctx.path === revocationPath) stats.revocations += 1;
  }
  await next();
});

provider.on('server_error', (ctx, error) => {
  console.error('oidc-provider server_error:', error);
});

handler = provider.callback();

function shutdown() {
  server.close();
  server.closeAllConnections?.();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
// With --exit-on-stdin-close the parent test process owns us through our stdin pipe: when
// it goes away (even killed), so do we.
if (process.argv.includes('--exit-on-stdin-close')) {
  process.stdin.on('end', shutdown);
  process.stdin.on('error', shutdown);
  process.stdin.resume();
}

process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
