// panva's certified oidc-provider as a FAPI 2.0 counterpart for tests/test_fapi.py (started by its fixture).
//
// Configured as the issue asks: pushed authorization requests required, private_key_jwt (the site's
// keys fetched from its /accounts/jwks.json), DPoP-bound access tokens with server nonces, PKCE,
// RFC 9207's iss parameter, PS256/ES256 only. Sign-ins are approved without a page: every
// interaction signs in the account the environment names and grants what was asked.
//
// Environment: PORT, SITE_JWKS_URI (https://site.test/...), SITE_ORIGIN (where site.test really is,
// http://127.0.0.1:N), REDIRECT_URI, PROVIDER_KEYS (a JSON key set, rotated between starts by the test).
import Provider from 'oidc-provider';

const env = process.env;
const issuer = `http://127.0.0.1:${env.PORT}`;
const SITE_HOST = 'site.test';

const config = {
  clients: [
    {
      // The high-assurance client: no secret, the site's own keys, DPoP-bound tokens.
      client_id: 'fapi-site',
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: undefined,
      jwks_uri: env.SITE_JWKS_URI,
      redirect_uris: [env.REDIRECT_URI],
      dpop_bound_access_tokens: true,
      id_token_signed_response_alg: 'PS256',
      grant_types: ['authorization_code', 'refresh_token'],
    },
    {
      // The plain code flow: a client secret and bearer tokens (PAR still, as discovery requires).
      client_id: 'plain-site',
      client_secret: 'plain-site-secret-for-tests-only-0123456789',
      token_endpoint_auth_method: 'client_secret_basic',
      redirect_uris: [env.REDIRECT_URI],
      id_token_signed_response_alg: 'ES256',
      grant_types: ['authorization_code', 'refresh_token'],
    },
  ],
  jwks: JSON.parse(env.PROVIDER_KEYS),
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['given_name', 'family_name', 'name'],
  },
  scopes: ['openid', 'email', 'profile', 'offline_access'],
  features: {
    devInteractions: { enabled: false },
    pushedAuthorizationRequests: { enabled: true, requirePushedAuthorizationRequests: true },
    dPoP: {
      enabled: true,
      nonceSecret: Buffer.alloc(32, 7),
      requireNonce: () => true,
    },
    revocation: { enabled: true },
    userinfo: { enabled: true },
  },
  enabledJWA: {
    clientAuthSigningAlgValues: ['PS256', 'ES256'],
    idTokenSigningAlgValues: ['PS256', 'ES256'],
    dPoPSigningAlgValues: ['ES256', 'PS256'],
    requestObjectSigningAlgValues: ['PS256', 'ES256'],
  },
  pkce: { required: () => true },
  issueRefreshToken: () => true,
  findAccount: (_ctx, sub) => ({
    accountId: sub,
    claims: () => ({
      sub,
      email: `${sub}@example.com`,
      email_verified: true,
      given_name: 'Alice',
      family_name: 'Fapi',
      name: 'Alice Fapi',
    }),
  }),
  // The site.test origin is the test's site, reached over loopback http: every other fetch is refused.
  fetch: (url, options) => {
    const target = new URL(url);
    if (target.hostname !== SITE_HOST) {
      return Promise.reject(new Error(`refusing to fetch ${target.origin}`));
    }
    const real = new URL(target.pathname + target.search, env.SITE_ORIGIN);
    const { dispatcher, ...rest } = options;
    return fetch(real, rest);
  },
  ttl: { AccessToken: 600, AuthorizationCode: 60, IdToken: 600, RefreshToken: 3600, PushedAuthorizationRequest: 60 },
};

const provider = new Provider(issuer, config);

// The OpenID Foundation's 2025 advisory on audience confusion: a client assertion's aud must be the
// issuer identifier alone (this version still also accepts endpoint URLs; the profile the site
// meets is the stricter one).
provider.OIDCContext.prototype.clientJwtAuthExpectedAudience = function expected() {
  return new Set([this.issuer]);
};

provider.use(async (ctx, next) => {
  if (ctx.method === 'GET' && ctx.path.startsWith('/interaction/')) {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    let result;
    if (details.prompt.name === 'login') {
      result = { login: { accountId: env.ACCOUNT || 'alice' } };
    } else {
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
      grant.addOIDCScope(details.params.scope);
      result = { consent: { grantId: await grant.save() } };
    }
    const to = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
    ctx.status = 303;
    ctx.redirect(to);
    return;
  }
  await next();
});

provider.listen(Number(env.PORT), '127.0.0.1', () => {
  process.stdout.write(`listening ${issuer}\n`);
});
