// Single sign-on in the dashboard (issue 13): the authorization-code flow
// with PKCE against a real OIDC provider, in Debian's chromium. The provider
// is oidc-provider (oidc_idp.mjs) with its development login form and a
// confidential client (client_secret_basic) that must use PKCE too; the tenant is configured through the
// API with a role mapping for the provider's groups claim. The user types the
// tenant, clicks "Sign in", fills the provider's form, and lands on the runs
// page as that user with the mapped roles; no token, code or state is left in
// the final URL or in storage, the page cannot read the session. The api's
// refusals (wrong or replayed state, replayed code, nonce, audience) are
// tested over HTTP in tests/e2e/test_e2e_oidc.py.
//
// Network: the browser reaches 127.0.0.1 (the api) and the provider's one
// address in the stack's test upstream network; anything else is aborted,
// and fails the test unless the provider's own page asked for it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import path from 'node:path';
import readline from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { API, adminLogin, apiCall, assertNoTokenExposed, creds, launchChromium, shot, uniq } from './helpers.mjs';

let adminToken;
const call = (method, p, body, expect) => apiCall(adminToken, method, p, body, expect);

// The provider, inside the test upstream network namespace; resolves to its issuer.
function startProvider(clientId, clientSecret, groups) {
  const env = process.env;
  const host = (env.PADDOCK_TEST_UPSTREAM_ADDRS || '').trim().split(/[\s,]+/)[0];
  assert.ok(host && env.PADDOCK_TEST_NETNS, 'PADDOCK_TEST_NETNS/PADDOCK_TEST_UPSTREAM_ADDRS are not set (endpoints.env)');
  const child = spawn('nsenter', [`--net=${env.PADDOCK_TEST_NETNS}`, process.execPath,
    path.join(import.meta.dirname, 'oidc_idp.mjs')], {
    env: { ...env, PADDOCK_IDP_HOST: host, PADDOCK_IDP_CLIENT_ID: clientId, PADDOCK_IDP_CLIENT_SECRET: clientSecret,
      PADDOCK_IDP_GROUPS: groups.join(','),
      PADDOCK_IDP_REDIRECT_URI: `${API}/v1/auth/oidc/callback` },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const ready = new Promise((resolve, reject) => {
    child.on('exit', (code) => reject(new Error(`the identity provider exited (${code})`)));
    readline.createInterface({ input: child.stdout }).once('line', (line) => resolve(JSON.parse(line).issuer));
  });
  return { child, ready };
}

let browser, idp, issuer, team, clientId, clientSecret;
const urls = [];
const offNet = [];

async function context() {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, baseURL: API });
  const allowed = new Set(['127.0.0.1', new URL(issuer).hostname]);
  await ctx.route('**/*', (route) => {
    const u = new URL(route.request().url());
    if (allowed.has(u.hostname)) return route.continue();
    // oidc-provider's development form links a web font: aborted like
    // everything else, but it is the provider's page, not ours
    const frame = route.request().frame();
    if (!(frame && frame.url().startsWith(`${issuer}/`))) offNet.push(u.href);
    return route.abort();
  });
  ctx.on('request', (req) => urls.push(req.url()));
  return ctx;
}

describe('single sign-on', { timeout: 300_000 }, () => {
  before(async () => {
    adminToken = await adminLogin();
    team = (await call('POST', '/v1/teams', { name: uniq('ssoteam') })).id;
    clientId = uniq('paddock-web');
    clientSecret = `cs-${crypto.randomBytes(24).toString('base64url')}`;
    idp = startProvider(clientId, clientSecret, ['engineers']);
    issuer = await idp.ready;
    const stored = await call('PUT', '/v1/tenant/oidc', {
      issuer, audience: clientId, jwks_url: `${issuer}/jwks`, client_secret: clientSecret,
      role_mapping: { claim: 'groups', map: { engineers: { team, roles: ['launcher', 'viewer'] } } },
    });
    assert.equal(stored.client_secret_set, true);
    assert.ok(!JSON.stringify(stored).includes(clientSecret), 'the client secret in the answer');
    browser = await launchChromium([new URL(issuer).hostname]);
  });

  after(async () => {
    if (browser) await browser.close();
    if (adminToken) await call('DELETE', '/v1/tenant/oidc', undefined, [204, 404]);
    if (idp) idp.child.kill('SIGTERM');
    assert.deepEqual(offNet, [], `the browser went elsewhere: ${offNet.join(', ')}`);
  });

  test('sign in at the provider and land on the runs page with the mapped role', async () => {
    const ctx = await context();
    const page = await ctx.newPage();
    await page.goto('/');
    // no tenant yet: nothing to sign in with
    assert.equal(await page.getByRole('link', { name: /Sign in with/ }).count(), 0);
    await page.getByLabel('Tenant').fill(creds().tenant);
    await shot(page, 'sso-login');
    await page.getByRole('link', { name: /Sign in with your identity provider/ }).click();

    // the provider's own login form (oidc-provider's development interactions)
    await page.waitForURL((u) => u.origin === issuer, { timeout: 30_000 });
    const user = uniq('sso-user');
    await page.locator('input[name="login"]').fill(user);
    await page.locator('input[name="password"]').fill('any password');
    await shot(page, 'sso-provider-login');
    await page.getByRole('button', { name: 'Sign-in' }).click();
    await page.getByRole('button', { name: 'Continue' }).click(); // consent

    await page.getByRole('heading', { name: 'Runs' }).waitFor({ timeout: 30_000 });
    assert.equal(page.url(), `${API}/#/runs`);
    await shot(page, 'sso-runs');
    const me = await page.evaluate(() => fetch('/v1/me').then((r) => r.json()));
    assert.equal(me.user.username, user);
    assert.deepEqual(me.teams.map((t) => [t.id, [...t.roles].sort()]), [[team, ['launcher', 'viewer']]]);
    assert.deepEqual(me.tenant_roles, []);

    // nothing of the flow is left where the page or a URL could give it away
    const seen = await assertNoTokenExposed(page, ctx, []);
    const flowCookie = (await ctx.cookies()).find((c) => c.name === 'paddock_oidc_flow');
    assert.ok(!flowCookie, 'the sign-in cookie outlives its callback');
    assert.ok(!/[?&#](code|state|id_token|access_token)=/.test(seen.url), `flow parameters in ${seen.url}`);
    // the one URL that carried the code is the provider's redirect to the callback: no token in any URL
    for (const u of urls) assert.ok(!/eyJ[\w-]+\.eyJ[\w-]+\./.test(u), `a JWT in a URL: ${u}`);
    await ctx.close();
  });

  test('a refused sign-in comes back to the login page with the reason and no session', async () => {
    const ctx = await context();
    const page = await ctx.newPage();
    // a tenant without OIDC: the same answer as for no such tenant
    await page.goto('/');
    await page.getByLabel('Tenant').fill(uniq('nosso'));
    await page.getByRole('link', { name: /Sign in with your identity provider/ }).click();
    await page.getByRole('alert').filter({ hasText: 'not enabled for this tenant' }).waitFor({ timeout: 30_000 });
    // the code is read once: the URL keeps only the tenant
    assert.ok(!page.url().includes('oidc_error'), page.url());
    await shot(page, 'sso-not-enabled');
    // the provider's callback without this browser's sign-in (a forged or replayed state)
    await page.goto(`/v1/auth/oidc/callback?code=forged&state=${'a'.repeat(64)}`);
    await page.getByRole('alert').filter({ hasText: 'expired, was used already' }).waitFor({ timeout: 30_000 });
    assert.ok(!(await ctx.cookies()).some((c) => c.name === 'paddock_session'), 'a session after a refusal');
    await ctx.close();
  });

  test('a wrong client secret: the provider refuses the code, the login page says so, no session', async () => {
    await call('PUT', '/v1/tenant/oidc', {
      issuer, audience: clientId, jwks_url: `${issuer}/jwks`, client_secret: `wrong-${clientSecret}`,
      role_mapping: { claim: 'groups', map: { engineers: { team, roles: ['launcher', 'viewer'] } } },
    });
    const ctx = await context();
    const page = await ctx.newPage();
    await page.goto('/');
    await page.getByLabel('Tenant').fill(creds().tenant);
    await page.getByRole('link', { name: /Sign in with your identity provider/ }).click();
    await page.waitForURL((u) => u.origin === issuer, { timeout: 30_000 });
    await page.locator('input[name="login"]').fill(uniq('sso-user'));
    await page.locator('input[name="password"]').fill('any password');
    await page.getByRole('button', { name: 'Sign-in' }).click();
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByRole('alert').filter({ hasText: 'did not accept the sign-in' }).waitFor({ timeout: 30_000 });
    assert.ok(!(await ctx.cookies()).some((c) => c.name === 'paddock_session'), 'a session after a refusal');
    await shot(page, 'sso-wrong-secret');
    await ctx.close();
  });
});
