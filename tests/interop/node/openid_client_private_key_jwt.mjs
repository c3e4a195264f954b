// Interop: npm openid-client v6 private_key_jwt (client_credentials) against Tessera.
//
// openid-client discovers the issuer, signs the assertion with aud = the issuer identifier,
// nbf = iat, a 60 s lifetime, a kid, and repeats client_id in the body; Tessera must accept
// that by default.
//
// Environment:
//   TESSERA_ISSUER        issuer URL (required; http allowed for loopback tests)
//   TESSERA_CLIENT_ID     client_id registered with private_key_jwt (required)
//   TESSERA_PRIVATE_KEY   path of the client's private key, PKCS#8 PEM (required)
//   TESSERA_ALG           ES256 (default) or RS256
//   TESSERA_KID           kid of the key as registered (optional)
//   TESSERA_SCOPE         scope to request (optional)
// Prints the token response JSON; exits 1 with a message on failure.
import { readFileSync } from 'node:fs';
import * as client from 'openid-client';
import { importPKCS8 } from 'jose';

function env(name, required = true) {
  const v = process.env[name];
  if (required && !v) {
    console.error(`${name} is required`);
    process.exit(1);
  }
  return v;
}

try {
  const issuer = new URL(env('TESSERA_ISSUER'));
  const clientId = env('TESSERA_CLIENT_ID');
  const alg = env('TESSERA_ALG', false) || 'ES256';
  const kid = env('TESSERA_KID', false);
  const scope = env('TESSERA_SCOPE', false);
  const key = await importPKCS8(readFileSync(env('TESSERA_PRIVATE_KEY'), 'utf8'), alg);
  const privateKey = kid ? { key, kid } : key;
  const config = await client.discovery(
    issuer,
    clientId,
    { token_endpoint_auth_method: 'private_key_jwt' },
    client.PrivateKeyJwt(privateKey),
    { execute: [client.allowInsecureRequests] },
  );
  const params = scope ? { scope } : {};
  const tokens = await client.clientCredentialsGrant(config, params);
  if (!tokens.access_token) throw new Error('no access_token in the response');
  console.log(JSON.stringify({ library: 'openid-client', alg, token: { ...tokens } }));
} catch (e) {
  console.error(`openid-client failed: ${e?.name}: ${e?.message}${e?.cause ? ` (cause: ${JSON.stringify(e.cause)})` : ''}`);
  process.exit(1);
}
