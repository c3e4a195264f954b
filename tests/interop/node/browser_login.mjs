// Headless Chromium (Debian's, driven by playwright-core) signs in through Tessera's real pages:
// keyboard only (Tab / typing / Enter), a wrong password shows the announced error, the right
// one reaches the consent page and then the relying party. Screenshots of the login, error,
// consent and error pages go to $ARTIFACTS.
import { chromium } from 'playwright-core';
import http from 'node:http';
import path from 'node:path';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const issuer = env('TESSERA_ISSUER');
const redirectUri = env('REDIRECT_URI');
const artifacts = env('ARTIFACTS');
const shot = (page, name) => page.screenshot({ path: path.join(artifacts, name), fullPage: true });
const check = (cond, msg) => {
  if (!cond) throw new Error(msg);
};

const context = await chromium.launchPersistentContext(env('USER_DATA_DIR'), {
  executablePath: env('CHROMIUM'),
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync',
  ],
  viewport: { width: 1100, height: 760 },
  deviceScaleFactor: 1,
});
// The relying party's callback: a real listener on the redirect URI's port.
let reached = null;
const rp = http.createServer((req, res) => {
  const u = new URL(req.url, redirectUri);
  if (u.pathname === new URL(redirectUri).pathname) reached = u.href;
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end('<!doctype html><title>RP</title><h1>Signed in at the relying party</h1>');
});
await new Promise((ok) => rp.listen(Number(new URL(redirectUri).port), '127.0.0.1', ok));
const result = { ok: false };
try {
  const page = context.pages()[0] || (await context.newPage());
  const cspViolations = [];
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
  });

  const params = new URLSearchParams({
    client_id: env('CLIENT_ID'), redirect_uri: redirectUri, response_type: 'code',
    scope: 'openid profile email offline_access', state: 'browser-state', nonce: 'browser-nonce',
  });
  await page.goto(`${issuer}/authorize?${params}`);
  await page.waitForSelector('form input[name="username"]');
  check(await page.title() === `Sign in · ${new URL(issuer).host}`, `title: ${await page.title()}`);
  const focused = () => page.evaluate(() => document.activeElement && (document.activeElement.id || document.activeElement.textContent.trim()));
  check(await focused() === 'username', `autofocus on the username, got ${await focused()}`);
  await shot(page, 'login.png');

  // Keyboard only: type, Tab to the password, Tab to the button, Enter.
  await page.keyboard.type(env('TEST_USERNAME'));
  await page.keyboard.press('Tab');
  check(await focused() === 'password', `Tab goes to the password, got ${await focused()}`);
  await page.keyboard.type('not-the-password');
  await page.keyboard.press('Tab');
  check(await focused() === 'Sign in', `Tab goes to the button, got ${await focused()}`);
  await Promise.all([page.waitForLoadState('load'), page.keyboard.press('Enter')]);
  const alert = page.locator('[role="alert"]');
  await alert.waitFor();
  check((await alert.innerText()).includes('Invalid username or password.'), `alert: ${await alert.innerText()}`);
  check(await page.inputValue('#username') === env('TEST_USERNAME'), 'username kept');
  check(await focused() === 'password', `after an error the password has focus, got ${await focused()}`);
  await shot(page, 'login-error.png');

  // The right password (focus is already in the field), Enter.
  await page.keyboard.type(env('TEST_PASSWORD'));
  await Promise.all([page.waitForURL(/\/consent\?/), page.keyboard.press('Enter')]);
  check(await focused() === 'Allow', `consent: Allow has focus, got ${await focused()}`);
  await shot(page, 'consent.png');
  await Promise.all([page.waitForURL((u) => u.href.startsWith(redirectUri)), page.keyboard.press('Enter')]);
  check(reached !== null, 'the relying party was reached');
  const cb = new URL(reached);
  check(cb.searchParams.get('code'), `no code in ${reached}`);
  check(cb.searchParams.get('state') === 'browser-state', 'state echoed');
  check(cb.searchParams.get('iss') === issuer, 'iss (RFC 9207)');

  // An error page (unknown client): shows a reference.
  const errorPage = await context.newPage();
  await errorPage.goto(`${issuer}/authorize?client_id=no-such-app&response_type=code&scope=openid`);
  const ref = await errorPage.locator('.reference code').innerText();
  check(/^[0-9a-f]{12}$/.test(ref), `reference id: ${ref}`);
  await shot(errorPage, 'error.png');

  check(cspViolations.length === 0, `CSP violations: ${cspViolations.join('\n')}`);
  Object.assign(result, { ok: true, callback: reached, reference: ref });
} finally {
  await context.close();
  rp.close();
}
console.log(JSON.stringify(result));
