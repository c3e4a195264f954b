"""A relying party that behaves like Atlassian's OpenID Connect SSO app for Jira/Confluence Data
Center: client_secret_basic at the token endpoint, no PKCE, RS256 ID tokens verified against the
JWKS with 60 s of clock skew, the username read from a configured claim (USERNAME_CLAIM) with
the UserInfo endpoint as fallback."""
import json
import os
import secrets
import sys
from urllib.parse import parse_qs, urlencode, urlparse

import jwt
import requests

sys.path.insert(0, os.path.dirname(__file__))
from http_login import sign_in  # noqa: E402

issuer = os.environ["TESSERA_ISSUER"]
client_id = os.environ["CLIENT_ID"]
client_secret = os.environ["CLIENT_SECRET"]
redirect_uri = os.environ["REDIRECT_URI"]
claim = os.environ.get("USERNAME_CLAIM", "preferred_username")
scope = os.environ.get("SCOPE", "openid profile email")
SKEW = 60

meta = requests.get(issuer + "/.well-known/openid-configuration", timeout=10).json()
assert "RS256" in meta["id_token_signing_alg_values_supported"]
assert "client_secret_basic" in meta["token_endpoint_auth_methods_supported"]

state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
auth = meta["authorization_endpoint"] + "?" + urlencode({
    "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
    "scope": scope, "state": state, "nonce": nonce,
})
callback = sign_in(auth, redirect_uri, os.environ["TEST_USERNAME"], os.environ["TEST_PASSWORD"])
q = parse_qs(urlparse(callback).query)
assert q["state"] == [state], q
assert q["iss"] == [issuer], q

r = requests.post(
    meta["token_endpoint"],
    auth=(client_id, client_secret),  # client_secret_basic
    data={"grant_type": "authorization_code", "code": q["code"][0], "redirect_uri": redirect_uri},
    timeout=10,
)
assert r.status_code == 200, r.text
tokens = r.json()

key = jwt.PyJWKClient(meta["jwks_uri"]).get_signing_key_from_jwt(tokens["id_token"])
id_token = jwt.decode(
    tokens["id_token"], key.key, algorithms=["RS256"], audience=client_id, issuer=issuer,
    leeway=SKEW, options={"require": ["exp", "iat", "sub", "aud", "iss"]},
)
assert id_token["nonce"] == nonce
assert jwt.get_unverified_header(tokens["id_token"])["alg"] == "RS256"

source = "id_token"
username = id_token.get(claim)
ui = requests.get(meta["userinfo_endpoint"], headers={"Authorization": "Bearer " + tokens["access_token"]}, timeout=10)
assert ui.status_code == 200, ui.text
userinfo = ui.json()
assert userinfo["sub"] == id_token["sub"]
if username is None:
    source = "userinfo"
    username = userinfo.get(claim)
assert username, "claim %s neither in the ID token nor in userinfo" % claim
assert userinfo.get(claim, username) == username

print(json.dumps({"ok": True, "username": username, "source": source, "claim": claim}))
