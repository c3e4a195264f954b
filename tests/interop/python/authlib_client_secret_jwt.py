#!/usr/bin/env python3
"""Interop: PyPI Authlib client_secret_jwt (client_credentials) against Tessera.

Authlib's ClientSecretJWT signs the assertion with HMAC keyed by the client secret's octets,
aud = the token endpoint URL, no kid, exp - iat = 3600 s and a jti.

Environment:
  TESSERA_TOKEN_ENDPOINT  token endpoint URL (required)
  TESSERA_CLIENT_ID       client_id registered with client_secret_jwt (required)
  TESSERA_CLIENT_SECRET   the client's secret (required)
  TESSERA_ALG             HS256 (default), HS384 or HS512
  TESSERA_SCOPE           scope to request (optional)
Prints the token response JSON. Exit status 0 on success, 1 with a message otherwise.
"""
import json
import os
import sys

try:
    from authlib.integrations.requests_client import OAuth2Session
    from authlib.oauth2.rfc7523 import ClientSecretJWT
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
    client_secret = env("TESSERA_CLIENT_SECRET")
    alg = os.environ.get("TESSERA_ALG", "HS256")
    scope = os.environ.get("TESSERA_SCOPE") or None
    auth = ClientSecretJWT(token_endpoint, alg=alg)
    try:
        session = OAuth2Session(client_id, client_secret, token_endpoint_auth_method=auth, scope=scope)
        session.register_client_auth_method(auth)
        token = session.fetch_token(token_endpoint, grant_type="client_credentials")
    except Exception as e:
        print(f"token request failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if "access_token" not in token:
        print(f"no access_token in response: {token}", file=sys.stderr)
        return 1
    print(json.dumps({"library": "authlib", "method": "client_secret_jwt", "alg": alg, "token": dict(token)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
