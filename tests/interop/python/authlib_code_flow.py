"""Authlib (OAuth2Session + its OIDC ID token validation) against Tessera: discovery, code flow
with PKCE S256, ID token signature and claims (iss, aud, nonce, at_hash), UserInfo, refresh."""
import json
import os
import sys

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, jwt
from authlib.oidc.core import CodeIDToken

sys.path.insert(0, os.path.dirname(__file__))
from http_login import sign_in  # noqa: E402

issuer = os.environ["TESSERA_ISSUER"]
client_id = os.environ["CLIENT_ID"]
redirect_uri = os.environ["REDIRECT_URI"]

meta = requests.get(issuer + "/.well-known/openid-configuration", timeout=10).json()
assert meta["issuer"] == issuer, meta

sess = OAuth2Session(
    client_id,
    os.environ["CLIENT_SECRET"],
    scope="openid profile email groups offline_access",
    redirect_uri=redirect_uri,
    code_challenge_method="S256",
    token_endpoint_auth_method="client_secret_basic",
)
verifier = generate_token(64)
nonce = generate_token(20)
uri, state = sess.create_authorization_url(
    meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce, prompt="consent"
)
callback = sign_in(uri, redirect_uri, os.environ["TEST_USERNAME"], os.environ["TEST_PASSWORD"])
token = sess.fetch_token(
    meta["token_endpoint"], authorization_response=callback, code_verifier=verifier, state=state
)

jwks = JsonWebKey.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())
claims = jwt.decode(
    token["id_token"],
    jwks,
    claims_cls=CodeIDToken,
    claims_options={"iss": {"essential": True, "value": issuer}},
    claims_params={"nonce": nonce, "client_id": client_id, "access_token": token["access_token"]},
)
claims.validate(leeway=60)

userinfo = sess.get(meta["userinfo_endpoint"], timeout=10).json()
assert userinfo["sub"] == claims["sub"], (userinfo, claims)

old_refresh = token["refresh_token"]
new = sess.refresh_token(meta["token_endpoint"], refresh_token=old_refresh)
assert new["access_token"] and new["refresh_token"] != old_refresh, new

print(json.dumps({"ok": True, "sub": claims["sub"], "userinfo": userinfo, "refreshed": True}))
