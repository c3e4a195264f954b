"""Drive Tessera's sign-in pages over plain HTTP (no JavaScript), like http_login.mjs."""
import html as htmllib
import re
from urllib.parse import urljoin

import requests


def _hidden(page, name):
    m = re.search(r'name="%s" value="([^"]*)"' % re.escape(name), page)
    if not m:
        raise AssertionError("no field %s in page:\n%s" % (name, page))
    return htmllib.unescape(m.group(1))


def sign_in(authorization_url, redirect_uri, username, password):
    """Returns the callback URL the server redirected to."""
    s = requests.Session()
    url = authorization_url
    r = s.get(url, allow_redirects=False)
    seen = []
    for _ in range(12):
        if 300 <= r.status_code < 400:
            nxt = urljoin(url, r.headers["Location"])
            if nxt.startswith(redirect_uri):
                return nxt
            url = nxt
            r = s.get(url, allow_redirects=False)
            continue
        page = r.text
        if 'name="password"' in page:
            if "login" in seen:
                raise AssertionError("login refused (%s):\n%s" % (r.status_code, page))
            seen.append("login")
            r = s.post(urljoin(url, "/login"), data={
                "tx": _hidden(page, "tx"), "csrf_token": _hidden(page, "csrf_token"),
                "username": username, "password": password,
            }, allow_redirects=False)
        elif 'name="decision"' in page:
            seen.append("consent")
            r = s.post(urljoin(url, "/consent"), data={
                "tx": _hidden(page, "tx"), "csrf_token": _hidden(page, "csrf_token"), "decision": "allow",
            }, allow_redirects=False)
        else:
            raise AssertionError("unexpected page (%s) at %s:\n%s" % (r.status_code, url, page))
    raise AssertionError("too many steps")
