// Headless Chromium (Debian's, driven by playwright-core) signs in through an upstream IdP:
// the relying-party Tessera's login page shows "Sign in with …" (screenshot
// login-upstream.png in $ARTIFACTS), the click leads to the upstream's own login page (another
// Tessera), the right password there leads back through the RP's callback to the application.
//
// Environment: RP_ISSUER, UPSTREAM_ISSUER, CLIENT_ID (the application at the RP), REDIRECT_URI
// (the application's redirect URI: the script only checks that the browser gets there), BUTTON (the button text), TEST_USERNAME, TEST_PASSWORD (at
// the upstream), CHROMIUM, ARTIFACTS, USER_DATA_DIR (a new empty directory).
// Prints one JSON line {"ok":true,"callback":…}.
import { chromium } from 'playwright-core';
import path from 'node:path';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const rpIssuer = env('RP_ISSUER');
const upstreamIssuer = env('UPSTREAM_ISSUER');
const redirectUri = env('REDIRECT_URI');
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
const result = { ok: false };
try {
  const page = context.pages()[0] || (await context.newPage());
  const cspViolations = [];
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
  });
  const params = new URLSearchParams({
    client_id: env('CLIENT_ID'), redirect_uri: redirectUri, response_type: 'code',
    scope: 'openid profile email', state: 'browser-state', nonce: 'browser-nonce',
  });
  await page.goto(`${rpIssuer}/authorize?${params}`);
  const button = page.getByRole('link', { name: env('BUTTON') });
  await button.waitFor();
  check(await page.locator('form input[name="username"]').count() === 1, 'the password form is shown too');
  await page.screenshot({ path: path.join(env('ARTIFACTS'), 'login-upstream.png'), fullPage: true });

  // At the upstream: its own login page.
  await Promise.all([page.waitForURL((u) => u.href.startsWith(`${upstreamIssuer}/login`)), button.click()]);
  await page.fill('#username', env('TEST_USERNAME'));
  await page.fill('#password', env('TEST_PASSWORD'));
  // The browser is sent to the application's redirect URI (nothing is served there: the
  // request is what counts).
  const [landing] = await Promise.all([
    page.waitForRequest((r) => r.url().startsWith(redirectUri)),
    page.getByRole('button', { name: 'Sign in' }).click(),
  ]);
  const reached = landing.url();
  const cb = new URL(reached);
  check(cb.searchParams.get('code'), `no code in ${reached}`);
  check(cb.searchParams.get('state') === 'browser-state', 'state echoed');
  check(cb.searchParams.get('iss') === rpIssuer, 'iss is the RP (RFC 9207)');
  check(cspViolations.length === 0, `CSP violations: ${cspViolations.join('\n')}`);
  Object.assign(result, { ok: true, callback: reached });
} finally {
  await context.close();
}
console.log(JSON.stringify(result));
