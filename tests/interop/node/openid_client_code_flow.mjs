// openid-client 6 (an OpenID Certified relying party) against Tessera: discovery, code flow
// with PKCE S256, state and nonce, RFC 9207 iss check, ID token validation with signature
// checks against the JWKS (non-repudiation), UserInfo and refresh.
import * as client from 'openid-client';
import { signIn } from './http_login.mjs';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const issuer = env('TESSERA_ISSUER');
const redirectUri = env('REDIRECT_URI');

const config = await client.discovery(
  new URL(issuer),
  env('CLIENT_ID'),
  { client_secret: env('CLIENT_SECRET'), id_token_signed_response_alg: 'RS256' },
  client.ClientSecretBasic(env('CLIENT_SECRET')),
  { execute: [client.allowInsecureRequests] },
);
// Verify ID token signatures with the published keys, not only TLS trust.
client.enableNonRepudiationChecks(config);

const codeVerifier = client.randomPKCECodeVerifier();
const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier);
const state = client.randomState();
const nonce = client.randomNonce();
const authUrl = client.buildAuthorizationUrl(config, {
  redirect_uri: redirectUri,
  scope: 'openid profile email groups offline_access',
  code_challenge: codeChallenge,
  code_challenge_method: 'S256',
  state,
  nonce,
  prompt: 'consent',
});

const { callback, steps } = await signIn(authUrl.href, redirectUri, env('TEST_USERNAME'), env('TEST_PASSWORD'));

const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
  pkceCodeVerifier: codeVerifier,
  expectedState: state,
  expectedNonce: nonce,
  idTokenExpected: true,
});
const claims = tokens.claims();
if (!claims || claims.iss !== issuer) throw new Error(`bad ID token claims ${JSON.stringify(claims)}`);
if (!tokens.refresh_token) throw new Error('no refresh token for offline_access with consent');

const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);

const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
if (!refreshed.access_token || !refreshed.refresh_token || refreshed.refresh_token === tokens.refresh_token) {
  throw new Error('refresh did not rotate');
}
const refreshedClaims = refreshed.claims();
if (refreshedClaims && refreshedClaims.sub !== claims.sub) throw new Error('refreshed ID token has another sub');

console.log(JSON.stringify({ ok: true, steps, sub: claims.sub, userinfo, refreshed: true }));
