// The browser test's identity provider (oidc.test.mjs): oidc-provider (pinned
// in package-lock.json) with its development login form, one confidential
// client (client_secret_basic, the secret of PADDOCK_IDP_CLIENT_SECRET) that
// must also use PKCE with S256, and accounts whose claims the role mapping
// of the tenant maps: any login name is an account, with that name as its
// preferred_username and the groups of PADDOCK_IDP_GROUPS.
//
// It listens on an address of the stack's test upstream network (its parent
// starts it inside that network namespace with nsenter): the api's fetches
// refuse loopback (the platform egress floor) and reach OIDC providers over
// plain http only there (PADDOCK_OIDC_HTTP_NETS). Prints {"issuer"} once
// listening; stops on SIGTERM.
//   PADDOCK_IDP_HOST PADDOCK_IDP_CLIENT_ID PADDOCK_IDP_CLIENT_SECRET PADDOCK_IDP_REDIRECT_URI PADDOCK_IDP_GROUPS \
//     node oidc_idp.mjs
import crypto from 'node:crypto';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';

const modules = process.env.PADDOCK_BROWSER_MODULES || path.join(import.meta.dirname, 'node_modules');
const { default: Provider } = await import(createRequire(path.join(modules, 'noop.js')).resolve('oidc-provider'));

const host = process.env.PADDOCK_IDP_HOST;
const groups = (process.env.PADDOCK_IDP_GROUPS || '').split(',').filter(Boolean);
const server = http.createServer();
await new Promise((resolve) => server.listen(0, host, resolve));
const issuer = `http://${host}:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: process.env.PADDOCK_IDP_CLIENT_ID,
    client_secret: process.env.PADDOCK_IDP_CLIENT_SECRET,
    token_endpoint_auth_method: 'client_secret_basic',
    redirect_uris: [process.env.PADDOCK_IDP_REDIRECT_URI],
    grant_types: ['authorization_code'],
    response_types: ['code'],
  }],
  pkce: { methods: ['S256'], required: () => true },
  claims: { openid: ['sub'], profile: ['preferred_username', 'groups'] },
  // the scope's claims in the ID token itself, as the api reads them there
  conformIdTokenClaims: false,
  findAccount: (ctx, sub) => ({ accountId: sub, claims: () => ({ sub, preferred_username: sub, groups }) }),
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  features: { devInteractions: { enabled: true } },
});
server.on('request', provider.callback());
process.on('SIGTERM', () => server.close(() => process.exit(0)));
console.log(JSON.stringify({ issuer }));
