#!/usr/bin/env python3
"""Interop: PyPI google-auth service-account credentials against Tessera, unchanged.

Reads a key file made by `tessera service-account create` and lets google-auth do exactly
what it does against Google (RS256 assertion, kid = private_key_id, aud hard-coded to
https://oauth2.googleapis.com/token, scope claim, no client authentication), POSTing to the
key file's token_uri. Prints one JSON object per refresh with the response and the access
token's claims (decoded without verification; the Rust test verifies them).

Environment:
  TESSERA_KEY_FILE   path of the service-account key file (required)
  TESSERA_SCOPES     space-separated scopes to request (optional; none = account default)
  TESSERA_SUBJECT    subject to impersonate with .with_subject(...) (optional)
Exit status: 0 on success; 1 with a message on stderr on any failure.
"""
import base64
import json
import os
import sys

try:
    import google.auth.transport.requests
    from google.oauth2 import service_account
except ImportError as e:  # pragma: no cover
    sys.exit(f"google-auth is not installed in this interpreter: {e}")


def claims_of(token: str) -> dict:
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))


def main() -> int:
    key_file = os.environ.get("TESSERA_KEY_FILE")
    if not key_file:
        print("TESSERA_KEY_FILE is required", file=sys.stderr)
        return 1
    scopes = os.environ.get("TESSERA_SCOPES", "").split()
    subject = os.environ.get("TESSERA_SUBJECT") or None

    creds = service_account.Credentials.from_service_account_file(key_file, scopes=scopes or None)
    if subject:
        creds = creds.with_subject(subject)
    request = google.auth.transport.requests.Request()
    try:
        creds.refresh(request)
    except Exception as e:  # google.auth.exceptions.RefreshError and transport errors
        print(f"refresh failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if not creds.token:
        print("refresh returned no access token", file=sys.stderr)
        return 1
    print(json.dumps({
        "library": "google-auth",
        "subject": subject,
        "scopes": scopes,
        "expiry": creds.expiry.isoformat() if creds.expiry else None,
        "access_token": creds.token,
        "claims": claims_of(creds.token),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
