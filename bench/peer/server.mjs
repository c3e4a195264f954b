// The benchmark peer: node-oidc-provider (npm `oidc-provider` ^9), configured
// like the Tessera instance that bench/run.sh starts:
//   - a confidential client using client_secret_basic and the client_credentials grant;
//   - optionally a second client using private_key_jwt (ES256) with the same grant;
//   - access tokens as ES256-signed JWTs. oidc-provider issues JWT access tokens
//     only for a resource server, so `features.resourceIndicators` supplies a
//     default resource whose `accessTokenFormat` is 'jwt' (signed ES256, 1 h);
//   - production-like: NODE_ENV=production, devInteractions off, no logging per request.
//
// Configuration comes from the environment (all set by bench/run.sh):
//   PEER_PORT            port to listen on (127.0.0.1 only)
//   PEER_CLIENT_ID       client_secret_basic client id
//   PEER_CLIENT_SECRET   its secret (run.sh passes the same string Tessera generated)
//   PEER_PKJWT_CLIENT_ID optional: private_key_jwt client id
//   PEER_PKJWT_JWKS      optional: file holding that client's public JWK Set (JSON)
//   PEER_SCOPE           optional: scope the clients may request (space separated)
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const port = Number.parseInt(process.env.PEER_PORT ?? '', 10);
if (!Number.isInteger(port) || port <= 0) {
  console.error('PEER_PORT must be set to a port number');
  process.exit(2);
}
const clientId = process.env.PEER_CLIENT_ID ?? 'bench-basic';
const clientSecret = process.env.PEER_CLIENT_SECRET;
if (!clientSecret) {
  console.error('PEER_CLIENT_SECRET must be set');
  process.exit(2);
}
const scope = process.env.PEER_SCOPE ?? '';
const resource = 'urn:tessera:bench:api';
const issuer = `http://127.0.0.1:${port}`;

// Signing keys generated at start, like Tessera's first start: ES256 signs the
// access tokens; an RS256 key is present because OpenID Connect requires it
// for ID tokens (unused by this grant).
function privateJwk(type, options, alg, kid) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), alg, use: 'sig', kid };
}
const jwks = {
  keys: [
    privateJwk('ec', { namedCurve: 'P-256' }, 'ES256', 'bench-es256'),
    privateJwk('rsa', { modulusLength: 2048 }, 'RS256', 'bench-rs256'),
  ],
};

const clients = [
  {
    client_id: clientId,
    client_secret: clientSecret,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    ...(scope ? { scope } : {}),
  },
];
if (process.env.PEER_PKJWT_CLIENT_ID && process.env.PEER_PKJWT_JWKS) {
  clients.push({
    client_id: process.env.PEER_PKJWT_CLIENT_ID,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'ES256',
    jwks: JSON.parse(readFileSync(process.env.PEER_PKJWT_JWKS, 'utf8')),
    ...(scope ? { scope } : {}),
  });
}

const provider = new Provider(issuer, {
  clients,
  jwks,
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  scopes: scope ? scope.split(' ') : [],
  clientAuthMethods: ['client_secret_basic', 'private_key_jwt'],
  enabledJWA: { clientAuthSigningAlgValues: ['ES256'] },
  ttl: { ClientCredentials: 3600 },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: false },
    revocation: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope,
        audience: resource,
        accessTokenTTL: 3600,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
});

// Surface unexpected server errors once each (a benchmark must not hide them).
provider.on('server_error', (ctx, err) => console.error('server_error', err));

provider.listen(port, '127.0.0.1', () => {
  console.log(`peer listening: ${issuer}`);
});
