// Drives Tessera's sign-in pages over plain HTTP, like a browser without JavaScript: follows
// redirects by hand with a cookie jar, fills the login form (with its CSRF token) and
// approves the consent page, until the server redirects to the relying party.

function hidden(html, name) {
  const m = html.match(new RegExp(`name="${name}" value="([^"]*)"`));
  if (!m) throw new Error(`no field ${name} in page:\n${html}`);
  return m[1].replaceAll('&amp;', '&');
}

export async function signIn(authorizationUrl, redirectUri, username, password) {
  const jar = new Map();
  const send = async (url, init = {}) => {
    const headers = { ...(init.headers || {}) };
    if (jar.size) headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const res = await fetch(url, { ...init, headers, redirect: 'manual' });
    for (const c of res.headers.getSetCookie()) {
      const [kv] = c.split(';');
      const i = kv.indexOf('=');
      if (/max-age=0/i.test(c)) jar.delete(kv.slice(0, i));
      else jar.set(kv.slice(0, i), kv.slice(i + 1));
    }
    return res;
  };
  const post = (url, fields) =>
    send(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields).toString(),
    });

  let url = new URL(authorizationUrl);
  let res = await send(url);
  const steps = [];
  for (let i = 0; i < 12; i++) {
    if (res.status >= 300 && res.status < 400) {
      const next = new URL(res.headers.get('location'), url);
      if (next.href.startsWith(redirectUri)) return { callback: next.href, steps };
      url = next;
      res = await send(url);
      continue;
    }
    const html = await res.text();
    if (html.includes('name="password"')) {
      if (steps.includes('login')) throw new Error(`login refused (${res.status}):\n${html}`);
      steps.push('login');
      res = await post(new URL('/login', url), {
        tx: hidden(html, 'tx'),
        csrf_token: hidden(html, 'csrf_token'),
        username,
        password,
      });
    } else if (html.includes('name="decision"')) {
      steps.push('consent');
      res = await post(new URL('/consent', url), {
        tx: hidden(html, 'tx'),
        csrf_token: hidden(html, 'csrf_token'),
        decision: 'allow',
      });
    } else {
      throw new Error(`unexpected page (${res.status}) at ${url}:\n${html}`);
    }
  }
  throw new Error('too many steps');
}
