// What the browser journeys share (dashboard.test.mjs, oidc.test.mjs,
// tool_approval.test.mjs): the stack's address and credentials, names, the
// browser and its loopback-only contexts, login, screenshots checked by
// axe-core, and the check that no session token is where a page, a URL or
// storage could give it away.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

// playwright-core and axe-core, installed by run.sh (npm ci into the build dir)
const modules = process.env.PADDOCK_BROWSER_MODULES || path.join(import.meta.dirname, 'node_modules');
export const requireModule = createRequire(path.join(modules, 'noop.js'));

export const API = (process.env.PADDOCK_API_URL || '').replace(/\/$/, '');
export const ART = process.env.PADDOCK_BROWSER_ARTIFACTS || path.join(process.cwd(), 'browser-artifacts');

export function envFile(file) {
  const out = {};
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const m = line.match(/^([A-Z0-9_]+)=(.*)$/);
    if (m) out[m[1]] = m[2].replace(/^'(.*)'$/, '$1');
  }
  return out;
}

export function creds() {
  const dir = process.env.PADDOCK_STATE_DIR || process.env.PADDOCK_E2E_DEFAULT_STATE_DIR;
  const f = envFile(path.join(dir, 'credentials'));
  return { tenant: process.env.PADDOCK_TENANT || f.PADDOCK_TENANT, username: process.env.PADDOCK_USER || f.PADDOCK_USER,
    password: process.env.PADDOCK_PASSWORD || f.PADDOCK_PASSWORD };
}

// The demo admin's bearer token (setup goes through the public API with it)
export async function adminLogin() {
  assert.ok(API, 'PADDOCK_API_URL is not set: export the stack\'s endpoints.env');
  const r = await fetch(`${API}/v1/auth/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(creds()) });
  assert.equal(r.status, 200, 'admin login');
  return (await r.json()).token;
}

// The public API with a bearer token (setup only; the browser uses the page)
export async function apiCall(token, method, p, body, expect = [200, 201, 202, 204]) {
  const r = await fetch(API + p, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  assert.ok(expect.includes(r.status), `${method} ${p} -> ${r.status}: ${text.slice(0, 400)}`);
  return text ? JSON.parse(text) : null;
}

// A new user of the tenant, member of team with roles: { username, password, id }
export async function newMember(token, team, roles) {
  const password = `pw-${Math.random().toString(36).slice(2)}-${Date.now()}`;
  const u = await apiCall(token, 'POST', '/v1/users', { username: uniq('web'), password });
  await apiCall(token, 'PUT', `/v1/teams/${team}/members/${u.id}`, { roles });
  return { username: u.username, password, id: u.id };
}

export const uniq = (p) => `${p}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}`;

// Debian's chromium, headless, resolving no name; hosts: addresses it may
// reach besides 127.0.0.1 (the journeys' contexts still route what they allow)
export function launchChromium(hosts = []) {
  const { chromium } = requireModule('playwright-core');
  return chromium.launch({
    executablePath: process.env.PADDOCK_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-domain-reliability',
      `--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1${hosts.map((h) => `, EXCLUDE ${h}`).join('')}`],
  });
}

// A context that reaches 127.0.0.1 only: anything else is aborted and pushed
// to seen.offLoopback (the journey fails on it); seen.urls gets every request,
// seen.dialogs every dialog's text (dismissed: agent text that ran as script).
export async function loopbackContext(browser, seen, width = 1280, height = 900) {
  const ctx = await browser.newContext({ viewport: { width, height }, baseURL: API });
  await ctx.route('**/*', (route) => {
    const u = new URL(route.request().url());
    if (u.hostname === '127.0.0.1') return route.continue();
    seen.offLoopback.push(u.href);
    return route.abort();
  });
  ctx.on('request', (req) => seen.urls.push(req.url()));
  ctx.on('page', (p) => p.on('dialog', (d) => { seen.dialogs.push(d.message()); d.dismiss(); }));
  return ctx;
}

// The login form, as who ({ username, password }) of the stack's tenant
export async function login(page, who) {
  await page.goto('/');
  await page.getByLabel('Tenant').fill(creds().tenant);
  await page.getByLabel('User name').fill(who.username);
  await page.getByLabel('Password').fill(who.password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Runs' }).waitFor({ timeout: 30_000 });
}

export async function shot(page, name) {
  fs.mkdirSync(ART, { recursive: true });
  // a full-page capture of a long run page waits on a loaded machine (CI shares its cores)
  await page.screenshot({ path: path.join(ART, `${name}.png`), fullPage: true, timeout: 90_000 });
}

// axe-core on the screen as it is: no serious or critical violation. Its
// source is evaluated over the DevTools protocol (not a <script> the CSP
// would refuse); it runs no eval of its own.
export async function axeCheck(page, name) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(requireModule('axe-core').source);
  const res = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = res.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad.map((v) => `${v.id} (${v.impact}): ${v.help}: ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')}`),
    [], `accessibility violations on ${name}`);
}

// Every screen a journey visits is captured and checked by axe, at the width it is shown.
export async function checkedShot(page, name) {
  await shot(page, name);
  await axeCheck(page, name);
}

// A pending approval's card in the queue: shot at both widths, approved with
// a comment, gone from the queue; then the run's page, once it shows the decision.
export async function approveFromQueue(page, card, runId, comment, name, timeout) {
  await checkedShot(page, `${name}-1280`);
  await page.setViewportSize({ width: 390, height: 844 });
  await checkedShot(page, `${name}-390`);
  await page.setViewportSize({ width: 1280, height: 900 });
  await card.locator('input[name=comment]').fill(comment);
  await card.getByRole('button', { name: 'Approve' }).click();
  await card.waitFor({ state: 'detached', timeout: 30_000 });
  await page.goto(`/#/runs/${runId}`);
  await page.locator('li.event[data-kind=approval_decided]').waitFor({ timeout });
}

// storage and URLs (urls: every request the browser made) never hold the session token
export async function assertNoTokenExposed(page, ctx, urls) {
  const session = (await ctx.cookies()).find((c) => c.name === 'paddock_session');
  assert.ok(session, 'no session cookie');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');
  const seen = await page.evaluate(() => ({
    cookie: document.cookie,
    local: JSON.stringify(Object.entries(localStorage)),
    sess: JSON.stringify(Object.entries(sessionStorage)),
    url: location.href,
  }));
  assert.ok(!seen.cookie.includes(session.value), 'the page can read the session token');
  assert.ok(!seen.cookie.includes('paddock_session'), 'the session cookie is not HttpOnly');
  assert.equal(seen.local, '[]', `localStorage holds ${seen.local}`);
  assert.equal(seen.sess, '[]', `sessionStorage holds ${seen.sess}`);
  for (const u of [...urls, seen.url]) {
    assert.ok(!u.includes(session.value), `the token in a URL: ${u}`);
    assert.ok(!/[?&](access_|id_)?token=/.test(u), `a token parameter in a URL: ${u}`);
  }
  return seen;
}
