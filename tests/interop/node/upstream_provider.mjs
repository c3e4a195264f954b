// node-oidc-provider (the reference OpenID provider from npm) as Tessera's *upstream* IdP, for
// the federation end-to-end tests: a second, independent implementation that Tessera signs its
// users in through.
//
// - one confidential client (client_secret_basic) whose redirect URI is Tessera's callback;
// - one account, CLAIMS_SUB, with email (verified), name, preferred_username and groups;
// - no clicking: the interaction route signs that account in and grants every requested scope
//   (provider.interactionFinished with login, then consent with a saved Grant), so the whole
//   flow can be driven over plain HTTP (or a browser that just follows redirects);
// - optionally TLS (TLS_CERT / TLS_KEY: PEM files), and TOKEN_HOST: the discovery document then
//   names the token endpoint on that host name instead of the issuer's (as Google does:
//   accounts.google.com vs oauth2.googleapis.com), so an outbound proxy can allow one and
//   refuse the other.
//
// Environment:
//   PORT            port on 127.0.0.1 (required)
//   REDIRECT_URI    the client's redirect URI (required)
//   CLIENT_ID, CLIENT_SECRET   the client (required)
//   CLAIMS_SUB      the account id (default "carol")
//   TLS_CERT, TLS_KEY          serve https (optional)
//   TOKEN_HOST      host name for the token endpoint in discovery (optional)
// Prints one JSON line {"ready":true,"issuer":…} once it listens; runs until killed.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import Provider from 'oidc-provider';

const env = (k, required = true) => {
  const v = process.env[k];
  if (required && !v) throw new Error(`${k} is not set`);
  return v;
};
const port = Number(env('PORT'));
const tls = process.env.TLS_CERT && process.env.TLS_KEY;
const issuer = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
const sub = env('CLAIMS_SUB', false) || 'carol';

const account = {
  sub,
  preferred_username: sub,
  name: 'Carol Upstream',
  email: `${sub}@upstream.example`,
  email_verified: true,
  groups: ['engineering', 'oncall'],
};

const provider = new Provider(issuer, {
  clients: [{
    client_id: env('CLIENT_ID'),
    client_secret: env('CLIENT_SECRET'),
    redirect_uris: [env('REDIRECT_URI')],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  async findAccount(ctx, id) {
    if (id !== sub) return undefined;
    return { accountId: id, claims: async () => ({ ...account }) };
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  scopes: ['openid', 'profile', 'email', 'groups'],
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: ['tessera-upstream-test-cookie-key'] },
  pkce: { required: () => true },
});
provider.proxy = false;

if (process.env.TOKEN_HOST) {
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path === '/.well-known/openid-configuration' && ctx.body && ctx.body.token_endpoint) {
      const u = new URL(ctx.body.token_endpoint);
      u.hostname = process.env.TOKEN_HOST;
      ctx.body = { ...ctx.body, token_endpoint: u.href };
    }
  });
}

// The automatic interaction: sign the test account in, then grant what is asked.
async function interaction(req, res) {
  const { prompt, params, session, grantId } = await provider.interactionDetails(req, res);
  if (prompt.name === 'login') {
    await provider.interactionFinished(req, res, { login: { accountId: sub } }, {
      mergeWithLastSubmission: false,
    });
    return;
  }
  if (prompt.name === 'consent') {
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const { details } = prompt;
    if (details.missingOIDCScope) grant.addOIDCScope(details.missingOIDCScope.join(' '));
    if (details.missingOIDCClaims) grant.addOIDCClaims(details.missingOIDCClaims);
    for (const [indicator, scope] of Object.entries(details.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scope.join(' '));
    }
    await provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, {
      mergeWithLastSubmission: true,
    });
    return;
  }
  res.statusCode = 501;
  res.end(`prompt ${prompt.name} is not automated`);
}

const callback = provider.callback();
const app = (req, res) => {
  if (req.method === 'GET' && req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((e) => {
      res.statusCode = 500;
      res.end(String(e && e.message));
    });
    return;
  }
  callback(req, res);
};
const server = tls
  ? https.createServer({ cert: readFileSync(process.env.TLS_CERT), key: readFileSync(process.env.TLS_KEY) }, app)
  : http.createServer(app);
server.listen(port, '127.0.0.1', () => {
  console.log(JSON.stringify({ ready: true, issuer }));
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
