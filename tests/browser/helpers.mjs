// What the browser journeys share (dashboard.test.mjs, oidc.test.mjs): the
// stack's address and credentials, names, screenshots, and the check that
// no session token is where a page, a URL or storage could give it away.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

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

export const uniq = (p) => `${p}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}`;

export async function shot(page, name) {
  fs.mkdirSync(ART, { recursive: true });
  // a full-page capture of a long run page waits on a loaded machine (CI shares its cores)
  await page.screenshot({ path: path.join(ART, `${name}.png`), fullPage: true, timeout: 90_000 });
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
