// `oauth2-mock-server`: a JWT-minting OAuth 2.0 server for the Rust integration tests, on
// 127.0.0.1 only. Tests shape each token through the token request.
//
//   node mock-server.mjs [--port N] [--exit-on-stdin-close]   (N = 0 picks an ephemeral port)
//
// When ready it prints exactly one line of JSON to stdout:
//   {"issuer": "...", "port": N, "jwks_uri": "...", "kids": {"ES256": "...", "RS256": "..."}}
//
// POST /token, form-encoded, grant_type=client_credentials, plus optional:
//   claims=<JSON object>  merged into the payload last (may override iss, aud, exp, ...)
//   expires_in=<seconds>  exp = iat + expires_in (negative: already expired); default 3600
//   alg=ES256|RS256       signing key (default ES256); the header carries its kid
//   scope, aud            copied into the payload by oauth2-mock-server itself
// The JWKS (both public keys) is at GET /jwks.
//
// WARNING: oauth2-mock-server's built-in /introspect answers {"active": true} for ANY
// token, and /revoke accepts anything. Never rely on them; use oidc-provider-server.mjs
// for introspection and revocation.

import { OAuth2Server } from 'oauth2-mock-server';

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

const server = new OAuth2Server();
const es256 = await server.issuer.keys.generate('ES256');
const rs256 = await server.issuer.keys.generate('RS256');
const kids = { ES256: es256.kid, RS256: rs256.kid };

// oauth2-mock-server rotates round-robin through its keys unless buildToken is given a kid.
// Pick the key from the request's `alg` (the issuer reads the kid synchronously, before
// its first await, so the shared variable cannot be mixed up between requests).
let nextKid;
const service = server.service;
const buildServiceToken = Object.getPrototypeOf(service).buildToken;
service.buildToken = function buildToken(req, expiresIn, transform) {
  const alg = typeof req.body?.alg === 'string' ? req.body.alg : 'ES256';
  nextKid = kids[alg];
  if (nextKid === undefined) {
    throw new Error(`unsupported alg ${alg}`);
  }
  return buildServiceToken.call(this, req, expiresIn, transform);
};
const buildIssuerToken = server.issuer.buildToken.bind(server.issuer);
server.issuer.buildToken = (opts) => buildIssuerToken({ ...opts, kid: nextKid });

function expiresIn(req) {
  const value = Number(req.body?.expires_in);
  return req.body?.expires_in !== undefined && Number.isInteger(value) ? value : undefined;
}

server.service.on('beforeTokenSigning', (token, req) => {
  const lifetime = expiresIn(req);
  if (lifetime !== undefined) {
    token.payload.exp = token.payload.iat + lifetime;
  }
  if (typeof req.body?.claims === 'string' && req.body.claims !== '') {
    const claims = JSON.parse(req.body.claims);
    if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) {
      throw new Error('claims must be a JSON object');
    }
    Object.assign(token.payload, claims);
    // A claim set to null removes it (e.g. {"exp": null}).
    for (const [name, value] of Object.entries(claims)) {
      if (value === null) delete token.payload[name];
    }
  }
});

server.service.on('beforeResponse', (response, req) => {
  const lifetime = expiresIn(req);
  if (lifetime !== undefined && response.body) {
    response.body.expires_in = lifetime;
  }
});

await server.start(requestedPort, '127.0.0.1');
const { port } = server.address();
// oauth2-mock-server names itself http://localhost:<port>; pin the loopback address.
const issuer = `http://127.0.0.1:${port}`;
server.issuer.url = issuer;

function shutdown() {
  server.stop().finally(() => process.exit(0));
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
if (process.argv.includes('--exit-on-stdin-close')) {
  process.stdin.on('end', shutdown);
  process.stdin.on('error', shutdown);
  process.stdin.resume();
}

process.stdout.write(`${JSON.stringify({ issuer, port, jwks_uri: `${issuer}/jwks`, kids })}\n`);
