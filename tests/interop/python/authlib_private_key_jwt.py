#!/usr/bin/env python3
"""Interop: PyPI Authlib private_key_jwt (client_credentials) against Tessera.

Authlib's PrivateKeyJWT signs the assertion with aud = the token endpoint URL, no kid,
exp - iat = 3600 s and a jti; Tessera must accept that by default.

Environment:
  TESSERA_TOKEN_ENDPOINT  token endpoint URL (required)
  TESSERA_CLIENT_ID       client_id registered with private_key_jwt (required)
  TESSERA_PRIVATE_KEY     path of the client's private key, PEM (PKCS#8) (required)
  TESSERA_ALG             ES256 (default) or RS256
  TESSERA_SCOPE           scope to request (optional)
  TESSERA_ASYNC           "1" to use AsyncOAuth2Client instead of OAuth2Session (optional)
Prints the token response JSON. Exit status 0 on success, 1 with a message otherwise.
"""
import asyncio
import json
import os
import sys

try:
    from authlib.integrations.requests_client import OAuth2Session
    from authlib.oauth2.rfc7523 import PrivateKeyJWT
    from joserfc.jwk import ECKey, OKPKey, RSAKey
except ImportError as e:  # pragma: no cover
    sys.exit(f"authlib is not installed in this interpreter: {e}")


def env(name: str) -> str:
    v = os.environ.get(name)
    if not v:
        print(f"{name} is required", file=sys.stderr)
        sys.exit(1)
    return v


def main() -> int:
    token_endpoint = env("TESSERA_TOKEN_ENDPOINT")
    client_id = env("TESSERA_CLIENT_ID")
    with open(env("TESSERA_PRIVATE_KEY"), "rb") as f:
        private_key = f.read()
    alg = os.environ.get("TESSERA_ALG", "ES256")
    scope = os.environ.get("TESSERA_SCOPE") or None
    # Authlib 1.9 imports a raw PEM as an RSA key whatever the alg ("Not a key of: 'RSA'" for
    # an EC key), so hand it a key object of the right type, as its docs do for non-RSA keys.
    key_type = ECKey if alg.startswith("ES") else OKPKey if alg == "EdDSA" else RSAKey
    private_key = key_type.import_key(private_key)
    auth = PrivateKeyJWT(token_endpoint, alg=alg)
    try:
        if os.environ.get("TESSERA_ASYNC") == "1":
            from authlib.integrations.httpx_client import AsyncOAuth2Client

            async def run():
                async with AsyncOAuth2Client(
                    client_id, private_key, token_endpoint_auth_method=auth, scope=scope
                ) as client:
                    client.register_client_auth_method(auth)
                    return await client.fetch_token(token_endpoint, grant_type="client_credentials")

            token = asyncio.run(run())
        else:
            session = OAuth2Session(client_id, private_key, token_endpoint_auth_method=auth, scope=scope)
            session.register_client_auth_method(auth)
            token = session.fetch_token(token_endpoint, grant_type="client_credentials")
    except Exception as e:
        print(f"token request failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if "access_token" not in token:
        print(f"no access_token in response: {token}", file=sys.stderr)
        return 1
    print(json.dumps({"library": "authlib", "alg": alg, "token": dict(token)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
