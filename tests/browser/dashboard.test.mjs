// The dashboard's journeys in Debian's chromium (issue 13): log in, launch a
// run and watch its events arrive live, approve a held egress request from
// the queue and see the run continue, cancel a run, a viewer who sees no
// other team's run and no action it cannot take; and the security checks:
// the CSP header, no token in any URL or storage, CSRF refused, agent output
// and file names rendered as text. Setup goes through the public API with the
// demo admin's bearer token; the browser only ever uses the page.
//
// Network: the browser reaches 127.0.0.1 only (every other request is
// aborted and fails the test; DNS resolves nothing). Screenshots of every
// screen, at 1280 and 390 px, go to PADDOCK_BROWSER_ARTIFACTS.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { API, adminLogin, apiCall, approveFromQueue, assertNoTokenExposed as noTokenExposed, checkedShot as shot,
  creds, launchChromium, login, loopbackContext, newMember, uniq } from './helpers.mjs';

const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
  "frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
const TERMINAL = ['succeeded', 'failed', 'cancelled', 'timed_out', 'limit_exceeded', 'rejected'];
const T = 120_000; // a run is provisioned on a shared, slow machine

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- setup through the API (bearer token)

let adminToken;
const call = (method, p, body, token = adminToken, expect = undefined) => apiCall(token, method, p, body, expect);

const makeUser = (team, roles) => newMember(adminToken, team, roles);

async function sandbox(team, spec, name = uniq('web')) {
  const s = await call('POST', '/v1/sandboxes', { name, team, spec });
  await call('POST', `/v1/sandboxes/${s.id}/versions`);
  return { id: s.id, name };
}

async function launch(sb) {
  return (await call('POST', '/v1/runs', { sandbox: sb.id })).id;
}

async function waitEvents(id, pick, what, timeout = T) {
  const end = Date.now() + timeout;
  while (Date.now() < end) {
    const got = pick((await call('GET', `/v1/runs/${id}/events?limit=1000`)).items);
    if (got) return got;
    await sleep(500);
  }
  assert.fail(`run ${id}: timed out waiting for ${what}`);
}

async function waitRun(id, pred, what, timeout = T) {
  const end = Date.now() + timeout;
  let run;
  while (Date.now() < end) {
    run = await call('GET', `/v1/runs/${id}`);
    if (pred(run)) return run;
    await sleep(500);
  }
  assert.fail(`run ${id}: timed out waiting for ${what}; last status ${run && run.status}`);
}

const PY = '/usr/bin/python3';
const cmd = (src, timeout_s = 120) => ({ agent: { type: 'command', command: [PY, '-c', src] }, limits: { timeout_s } });

// Agent output with colours and with what would be markup if it were
// rendered as HTML; a file whose name is markup too.
const XSS = '<img src=x onerror="window.__xss=1">';
const LIVE_SRC = `
import os, sys, time
print("first line", flush=True)
time.sleep(60)  # long enough for a browser on a loaded machine to open the page while it runs
print("\\x1b[31mred text\\x1b[0m and \\x1b[1;32mbold green\\x1b[0m", flush=True)
name = ${JSON.stringify(XSS + '.txt')}
open(name, "w").write(${JSON.stringify(XSS)} + "\\n<script>window.__xss=3</script>\\n")
print("wrote", name, flush=True)
print(${JSON.stringify(XSS)}, "<script>window.__xss=2</script>", flush=True)
time.sleep(2)
print("last line", flush=True)
`;
const LONG_SRC = 'import time\nprint("waiting", flush=True)\ntime.sleep(600)\n';

// ---------------------------------------------------------------- the browser

let browser;
// what the browser did: loopback only (anything else fails the suite), no dialog
const seen = { offLoopback: [], urls: [], dialogs: [] };
const { offLoopback, urls, dialogs } = seen;
const context = (width, height) => loopbackContext(browser, seen, width, height);

// Presses Tab (or Shift+Tab) until the focused element matches the CSS
// selector; fails after max presses. Whatever takes the focus on the way
// must show it (an outline).
async function tabTo(page, selector, { max = 80, back = false } = {}) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press(back ? 'Shift+Tab' : 'Tab');
    const st = await page.evaluate((sel) => {
      const el = document.activeElement;
      if (!el || el === document.body) return { hit: false, visible: true };
      const cs = getComputedStyle(el);
      return { hit: el.matches(sel), visible: cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) > 0,
        tag: el.outerHTML.slice(0, 100) };
    }, selector);
    assert.ok(st.visible, `no visible focus on ${st.tag}`);
    if (st.hit) return;
  }
  assert.fail(`${selector}: not reached with ${max} presses of ${back ? 'Shift+Tab' : 'Tab'}`);
}

// A new context logged in as the demo admin, on the screen of a nav link.
async function adminOn(link, heading) {
  const ctx = await context();
  const page = await ctx.newPage();
  const c = creds();
  await login(page, { username: c.username, password: c.password });
  await page.getByRole('link', { name: link }).click();
  await page.getByRole('heading', { name: heading }).waitFor();
  return { ctx, page };
}

// storage and URLs never hold the session token
const assertNoTokenExposed = (page, ctx) => noTokenExposed(page, ctx, urls);

let team, teamB, approver, viewer, secAdmin, auditor, prof, draftProf, liveSb, askSb, longSb, otherRun;

describe('dashboard', { timeout: 900_000 }, () => {
  before(async () => {
    adminToken = await adminLogin();
    const me = await call('GET', '/v1/me');
    team = me.teams[0].id;
    teamB = (await call('POST', '/v1/teams', { name: uniq('webteam') })).id;
    approver = await makeUser(team, ['approver', 'viewer', 'reviewer']);
    viewer = await makeUser(team, ['viewer']);
    secAdmin = await makeUser(team, ['security_admin', 'viewer']);
    auditor = { username: uniq('webaudit'), password: `pw-${Math.random().toString(36).slice(2)}-${Date.now()}` };
    auditor.id = (await call('POST', '/v1/users', { ...auditor, auditor: true })).id;
    liveSb = await sandbox(team, cmd(LIVE_SRC));
    longSb = await sandbox(team, cmd(LONG_SRC, 900));
    // an unknown destination is asked for; its address is in an approved
    // profile's range (the stack's test network), so the approval can grant it
    const env = process.env;
    const name = (env.PADDOCK_TEST_UPSTREAM_NAMES || '').trim().split(/[\s,]+/)[0];
    const addr = (env.PADDOCK_TEST_UPSTREAM_ADDRS || '').trim().split(/[\s,]+/)[0];
    assert.ok(name && addr, 'PADDOCK_TEST_UPSTREAM_NAMES/ADDRS are not set (endpoints.env)');
    prof = await call('POST', '/v1/catalog/egress-profiles',
      { name: uniq('webprof'), body: { rules: [`${addr}:18081`] } });
    await call('POST', `/v1/catalog/egress-profiles/${prof.id}/approve`, { content_sha256: prof.content_sha256 });
    // a draft for the catalog journey: a security_admin approves it, nobody else is offered to
    draftProf = await call('POST', '/v1/catalog/egress-profiles',
      { name: uniq('webdraft'), body: { description: 'a <b>draft</b> mirror', rules: [`${addr}:18082`] } });
    const askSrc = `
import urllib.request, urllib.error
try:
    urllib.request.urlopen("http://${name}:18081/asked", timeout=250)
    print("GET asked ok", flush=True)
except urllib.error.HTTPError as e:
    print("GET asked", e.code, flush=True)
except Exception as e:
    print("GET asked", type(e).__name__, flush=True)
print("continued after the decision", flush=True)
`;
    const askSpec = cmd(askSrc, 300);
    askSpec.egress = { profiles: [prof.id], unknown: 'ask' };
    askSb = await sandbox(team, askSpec);
    otherRun = await launch(await sandbox(teamB, cmd('print("team b")')));
    browser = await launchChromium();
  });

  after(async () => {
    if (browser) await browser.close();
    assert.deepEqual(offLoopback, [], `the browser tried to leave loopback: ${offLoopback.join(', ')}`);
    assert.deepEqual(dialogs, [], `a dialog opened (script from agent text ran?): ${dialogs.join(', ')}`);
  });

  test('the page is served with the strict CSP and nothing inline', async () => {
    const ctx = await context();
    const page = await ctx.newPage();
    const resp = await page.goto('/');
    const h = resp.headers();
    assert.equal(h['content-security-policy'], CSP);
    assert.equal(h['x-content-type-options'], 'nosniff');
    assert.equal(h['referrer-policy'], 'no-referrer');
    await page.getByRole('button', { name: 'Log in' }).waitFor();
    await shot(page, '01-login-1280');
    await page.setViewportSize({ width: 390, height: 844 });
    await shot(page, '01-login-390');
    await ctx.close();
  });

  test('log in, launch from the form and watch the events arrive live; output is text', async () => {
    const ctx = await context();
    const page = await ctx.newPage();
    const c = creds();
    await login(page, { username: c.username, password: c.password });
    await shot(page, '02-runs-1280');
    await page.getByRole('link', { name: 'Launch' }).click();
    await page.getByLabel('Definition').selectOption(liveSb.id);
    await page.getByRole('button', { name: 'Launch' }).waitFor();
    await shot(page, '03-launch-1280');
    await page.locator('form.launch button[type=submit]:not([disabled])').click();
    await page.waitForURL(/#\/runs\/[0-9a-f-]{36}$/, { timeout: 30_000 });
    const runId = page.url().split('/').pop();
    // the first line arrives while the run still runs: live, not a reload
    await page.locator('li.event[data-kind=output]', { hasText: 'first line' }).waitFor({ timeout: T });
    const statusAtFirst = await page.locator('#run-status').innerText();
    assert.ok(!TERMINAL.includes(statusAtFirst.trim()), `the run had ended (${statusAtFirst}) before its first line showed`);
    assert.equal(await page.locator('#stream-state').innerText(), 'live');
    await page.locator('li.event[data-kind=output]', { hasText: 'last line' }).waitFor({ timeout: T });
    await page.locator('#run-status', { hasText: 'succeeded' }).waitFor({ timeout: T });
    // colours are spans with classes; markup in the output is text
    const red = page.locator('pre.output span.ansi-fg-1', { hasText: 'red text' });
    assert.equal(await red.count(), 1);
    assert.equal(await page.locator('pre.output span.ansi-fg-2.ansi-bold', { hasText: 'bold green' }).count(), 1);
    assert.ok((await page.locator('ol.events').innerText()).includes(XSS), 'the markup is not shown as text');
    assert.ok((await page.locator('ol.events').innerText()).includes(`wrote ${XSS}.txt`), 'the file name is not shown as text');
    assert.equal(await page.locator('ol.events img, ol.events script').count(), 0, 'agent text became elements');
    assert.equal(await page.evaluate(() => window.__xss), undefined, 'agent text ran as script');
    // every seq once, in order (no duplicate after the live feed)
    const seqs = await page.locator('li.event').evaluateAll((els) => els.map((e) => Number(e.dataset.seq)));
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
    assert.equal(new Set(seqs).size, seqs.length);
    // the evidence so far: the artifact manifest with sizes and hashes, as the API has it
    const art = page.locator('table.artifacts tr[data-artifact="workspace.diff"]');
    await art.waitFor({ timeout: 60_000 });
    const manifest = await call('GET', `/v1/runs/${runId}/artifacts`);
    const diff = manifest.items.find((x) => x.name === 'workspace.diff');
    assert.equal((await art.locator('td.sha').innerText()).trim(), diff.sha256);
    assert.ok((await art.innerText()).includes(String(diff.size)));
    await shot(page, '04-run-1280');
    await page.setViewportSize({ width: 390, height: 844 });
    await shot(page, '04-run-390');
    await page.setViewportSize({ width: 1280, height: 900 });
    // the workspace diff, read through the api (?inline=true: the page may
    // fetch only its own origin), side by side, then unified; the markup the
    // agent put in a file's name and content is text
    const file = page.locator('article.diff-file', { has: page.locator('code.diff-name', { hasText: XSS }) });
    await file.waitFor({ timeout: 30_000 });
    assert.equal(await file.locator('table.diff.side').count(), 1, 'side by side is not the first layout');
    assert.ok((await file.locator('table.diff').innerText()).includes(XSS), 'the diff content is not shown as text');
    assert.ok((await file.locator('table.diff').innerText()).includes('<script>window.__xss=3</script>'));
    assert.ok(urls.some((u) => u.includes(`/v1/runs/${runId}/artifacts/workspace.diff?inline=true`)),
      'the diff was not read through the api');
    await page.locator('section[aria-label="workspace diff"]').scrollIntoViewIfNeeded();
    await shot(page, '10-diff-side-1280');
    await page.getByLabel('Unified').check();
    await file.locator('table.diff.unified').waitFor();
    assert.ok((await file.locator('table.diff.unified').innerText()).includes(XSS));
    await shot(page, '10-diff-unified-1280');
    await page.setViewportSize({ width: 390, height: 844 });
    await shot(page, '10-diff-unified-390');
    await page.setViewportSize({ width: 1280, height: 900 });
    // the effective policy the run had, and the audit chain as the api verified it (an admin may)
    await page.locator('section[aria-label="effective policy"] pre.json').waitFor({ timeout: 30_000 });
    await page.locator('#audit-verify', { hasText: 'verified' }).waitFor({ timeout: 30_000 });
    assert.equal((await call('GET', '/v1/audit/verify')).ok, true);
    assert.equal(await page.locator('main img, main script').count(), 0, 'agent text became elements');
    assert.equal(await page.evaluate(() => window.__xss), undefined, 'agent text ran as script');
    // the same events after a reload (history replayed from seq 0)
    await page.reload();
    await page.locator('li.event[data-kind=output]', { hasText: 'last line' }).waitFor({ timeout: 30_000 });
    const again = await page.locator('li.event').evaluateAll((els) => els.map((e) => Number(e.dataset.seq)));
    assert.deepEqual(again, seqs);
    await page.goto('/#/runs');
    await page.locator(`tr[data-run="${runId}"]`).waitFor({ timeout: 30_000 });
    await page.setViewportSize({ width: 390, height: 844 });
    await shot(page, '02-runs-390');
    await assertNoTokenExposed(page, ctx);
    await ctx.close();
  });

  test('an approver approves a held egress request from the queue and the run continues', async () => {
    const runId = await launch(askSb);
    const ctx = await context();
    const page = await ctx.newPage();
    await login(page, approver);
    await page.getByRole('link', { name: 'Approvals' }).click();
    const card = page.locator('li.approval', { has: page.locator(`a[href="#/runs/${runId}"]`) });
    await card.waitFor({ timeout: T });
    assert.ok((await card.innerText()).includes('egress'));
    await approveFromQueue(page, card, runId, 'fine for the browser test', '05-approvals', T);
    await page.locator('li.event[data-kind=output]', { hasText: 'continued after the decision' }).waitFor({ timeout: T });
    await page.locator('#run-status', { hasText: 'succeeded' }).waitFor({ timeout: T });
    const decided = await call('GET', `/v1/runs/${runId}/events?limit=1000`);
    const d = decided.items.find((e) => e.kind === 'approval_decided');
    assert.equal(d.data.decision, 'approve');
    // who approved what, on the run's evidence (the approver reviews too);
    // the audit chain is for administrators, and the page says so
    const row = page.locator(`section[aria-label="approvals and reviews"] tr[data-approval="${d.data.approval_id}"]`);
    await row.waitFor({ timeout: 30_000 });
    assert.match(await row.innerText(), new RegExp(`approve\\s+user:${approver.id}`));
    assert.match(await page.locator('#audit-verify').innerText(), /tenant administrators/);
    await page.locator('section[aria-label="approvals and reviews"]').scrollIntoViewIfNeeded();
    await shot(page, '06-run-approvals-evidence-1280');
    await shot(page, '06-run-approved-1280');
    await assertNoTokenExposed(page, ctx);
    await ctx.close();
  });

  test('by keyboard alone: reach the approvals queue and approve a held egress request', async () => {
    const runId = await launch(askSb);
    const ctx = await context();
    const page = await ctx.newPage();
    await page.goto('/');
    await page.getByRole('button', { name: 'Log in' }).waitFor();
    const c = creds();
    // the form's fields in order, typed into; Enter submits
    for (const [name, value] of [['tenant', c.tenant], ['username', approver.username], ['password', approver.password]]) {
      await tabTo(page, `input[name=${name}]`);
      await page.keyboard.type(value);
    }
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Runs' }).waitFor({ timeout: 30_000 });
    await tabTo(page, 'nav a[href="#/approvals"]');
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Approvals' }).waitFor();
    const card = `li.approval:has(a[href="#/runs/${runId}"])`;
    await page.locator(card).waitFor({ timeout: T });
    await tabTo(page, `${card} input[name=comment]`, { max: 200 });
    await page.keyboard.type('approved by keyboard');
    await tabTo(page, `${card} button`);
    assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Approve');
    await shot(page, '17-keyboard-approve-focus-1280');
    await page.keyboard.press('Space');
    await page.locator(card).waitFor({ state: 'detached', timeout: 30_000 });
    const ev = await waitEvents(runId, (items) => items.find((e) => e.kind === 'approval_decided'), 'the decision');
    assert.equal(ev.data.decision, 'approve');
    assert.equal(ev.data.by, `user:${approver.id}`);
    await waitRun(runId, (r) => TERMINAL.includes(r.status), 'the run to end');
    await ctx.close();
  });

  test('cancel a run with confirmation', async () => {
    const runId = await launch(longSb);
    await waitRun(runId, (r) => r.status === 'running', 'running');
    const ctx = await context();
    const page = await ctx.newPage();
    const c = creds();
    await login(page, { username: c.username, password: c.password });
    await page.goto(`/#/runs/${runId}`);
    await page.locator('li.event[data-kind=output]', { hasText: 'waiting' }).waitFor({ timeout: T });
    await page.getByRole('button', { name: 'Cancel run' }).click();
    await page.getByRole('dialog').waitFor();
    await shot(page, '07-cancel-confirm-1280');
    await page.getByRole('button', { name: 'Yes, cancel the run' }).click();
    await page.locator('#run-status', { hasText: 'cancelled' }).waitFor({ timeout: T });
    assert.equal(await page.getByRole('button', { name: 'Cancel run' }).count(), 0);
    // the page shows the stream's status event; the run record follows it
    // (paddock.runs.status is produced after paddock.runs.events: web/src/main.js)
    await waitRun(runId, (r) => r.status === 'cancelled', 'the record to say cancelled');
    await shot(page, '07-cancelled-1280');
    await ctx.close();
  });

  test('a viewer sees no other team\'s run and no action it cannot take', async () => {
    const mine = await launch(longSb);
    await waitRun(otherRun, (r) => TERMINAL.includes(r.status), 'team B run to end');
    const ctx = await context();
    const page = await ctx.newPage();
    await login(page, viewer);
    await page.locator(`tr[data-run="${mine}"]`).waitFor({ timeout: 30_000 });
    assert.equal(await page.locator(`tr[data-run="${otherRun}"]`).count(), 0, 'the viewer sees team B\'s run');
    assert.equal(await page.getByRole('link', { name: 'Launch' }).count(), 0);
    assert.equal(await page.getByRole('link', { name: 'Approvals' }).count(), 0);
    await shot(page, '08-viewer-runs-1280');
    await page.goto(`/#/runs/${mine}`);
    await page.locator('#run-status').waitFor({ timeout: 30_000 });
    assert.equal(await page.getByRole('button', { name: 'Cancel run' }).count(), 0, 'a viewer is offered cancel');
    await shot(page, '08-viewer-run-1280');
    await page.goto(`/#/runs/${otherRun}`);
    await page.getByRole('alert').waitFor({ timeout: 30_000 });
    assert.match(await page.getByRole('alert').innerText(), /not_found/);
    assert.equal(await page.locator('#run-status').count(), 0);
    await shot(page, '08-viewer-other-team-1280');
    // a write the page itself does not offer, forged by script without the CSRF header: refused
    const forged = await page.evaluate(async (id) => {
      const r = await fetch(`/v1/runs/${id}/cancel`, { method: 'POST', credentials: 'same-origin' });
      return { status: r.status, body: await r.json() };
    }, mine);
    assert.equal(forged.status, 403);
    assert.equal(forged.body.code, 'csrf_failed');
    await call('POST', `/v1/runs/${mine}/cancel`);
    // the catalog: browsable, but no approve button for a viewer
    await page.getByRole('link', { name: 'Catalog' }).click();
    await page.locator('select[name=catalog-kind]').selectOption('egress-profiles');
    const draftRow = page.locator(`tr[data-item="${draftProf.name}"]`);
    await draftRow.waitFor({ timeout: 30_000 });
    assert.equal(await draftRow.getByRole('button').count(), 0, 'a viewer is offered to approve');
    await shot(page, '12-catalog-viewer-1280');
    await assertNoTokenExposed(page, ctx);
    await ctx.close();
  });

  test('a security_admin approves a draft catalog item', async () => {
    const ctx = await context();
    const page = await ctx.newPage();
    await login(page, secAdmin);
    await page.getByRole('link', { name: 'Catalog' }).click();
    await page.getByRole('heading', { name: 'Catalog' }).waitFor();
    // every kind lists (the five a definition uses, models, policy packs)
    for (const k of ['images', 'skills', 'prompt-templates', 'connectors', 'models', 'policy-packs']) {
      await page.locator('select[name=catalog-kind]').selectOption(k);
      await page.locator('table.catalog, main p:has-text("No ")').first().waitFor({ timeout: 30_000 });
      assert.equal(await page.getByRole('alert').count(), 0, `listing ${k} failed`);
    }
    await page.locator('select[name=catalog-kind]').selectOption('egress-profiles');
    const row = page.locator(`tr[data-item="${draftProf.name}"]`);
    await row.waitFor({ timeout: 30_000 });
    assert.equal(await row.getAttribute('data-state'), 'draft');
    assert.ok((await row.innerText()).includes('a <b>draft</b> mirror'), 'the description is not text');
    await shot(page, '12-catalog-1280');
    await page.setViewportSize({ width: 390, height: 844 });
    await shot(page, '12-catalog-390');
    await page.setViewportSize({ width: 1280, height: 900 });
    await row.getByRole('button', { name: `Approve ${draftProf.name}` }).click();
    await page.locator(`tr[data-item="${draftProf.name}"][data-state="approved"]`).waitFor({ timeout: 30_000 });
    assert.equal(await page.locator(`tr[data-item="${draftProf.name}"] button`).count(), 0);
    const item = await call('GET', `/v1/catalog/egress-profiles/${draftProf.id}`);
    assert.equal(item.state, 'approved');
    assert.equal(item.approved_by, `user:${secAdmin.id}`);
    await ctx.close();
  });

  test('an admin creates a user and grants a role', async () => {
    const { ctx, page } = await adminOn('Admin', 'Administration');
    const name = uniq('webadmin');
    await page.locator('input[name=new-username]').fill(name);
    await page.locator('input[name=new-password]').fill(`pw-${Date.now()}-long-enough`);
    await page.getByRole('button', { name: 'Create user' }).click();
    await page.locator(`tr[data-user="${name}"]`).waitFor({ timeout: 30_000 });
    await page.locator('select[name=grant-team]').selectOption(team);
    await page.locator('select[name=grant-user]').selectOption({ label: name });
    await page.locator('input[name=role-viewer]').check();
    await page.locator('input[name=role-launcher]').check();
    await page.getByRole('button', { name: 'Save roles' }).click();
    const row = page.locator(`tr[data-member="${name}"]`);
    await row.waitFor({ timeout: 30_000 });
    assert.match(await row.innerText(), /viewer/);
    const members = await call('GET', `/v1/teams/${team}/members`);
    const m = members.items.find((x) => x.user.username === name);
    assert.deepEqual([...m.roles].sort(), ['launcher', 'viewer']);
    await shot(page, '09-admin-1280');
    await page.setViewportSize({ width: 390, height: 844 });
    await shot(page, '09-admin-390');
    await page.setViewportSize({ width: 1280, height: 900 });
    // a service account and a token: the value shown once, working, then revoked
    const sa = uniq('websa');
    await page.locator('input[name=sa-name]').fill(sa);
    await page.locator('select[name=sa-team]').selectOption(team);
    await page.getByRole('button', { name: 'Create service account' }).click();
    const saRow = page.locator(`tr[data-sa="${sa}"]`);
    await saRow.waitFor({ timeout: 30_000 });
    await saRow.locator(`input[name="token-name-${sa}"]`).fill('ci');
    await saRow.getByRole('button', { name: `Issue token for ${sa}` }).click();
    const shown = page.locator('#new-token');
    await shown.waitFor({ timeout: 30_000 });
    const tok = (await shown.innerText()).trim();
    assert.match(tok, /^[0-9a-f]{64}$/);
    await saRow.locator('li[data-token="ci"][data-state="active"]').waitFor({ timeout: 30_000 });
    await shot(page, '13-service-account-token-1280');
    await page.setViewportSize({ width: 390, height: 844 });
    await shot(page, '13-service-account-token-390');
    await page.setViewportSize({ width: 1280, height: 900 });
    const meAs = (t) => fetch(`${API}/v1/me`, { headers: { Authorization: `Bearer ${t}` } }).then((r) => r.status);
    assert.equal(await meAs(tok), 200, 'the token shown does not authenticate');
    await page.getByRole('button', { name: 'I have copied it' }).click();
    assert.ok(!(await page.content()).includes(tok), 'the token is still in the page after it was dismissed');
    const kept = await page.evaluate(() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)]));
    assert.ok(!kept.includes(tok) && !urls.some((u) => u.includes(tok)), 'the token was kept or put in a URL');
    await saRow.getByRole('button', { name: `Revoke token ci of ${sa}` }).click();
    await saRow.locator('li[data-token="ci"][data-state="revoked"]').waitFor({ timeout: 30_000 });
    assert.equal(await meAs(tok), 401, 'a revoked token still authenticates');
    // the tenant's OIDC settings: a bad value refused at its field (nothing
    // stored), then saved; removed again through the API (other tests log in
    // to this tenant). PUT fetches nothing: the JWKS is read at login only.
    const addr = (process.env.PADDOCK_TEST_UPSTREAM_ADDRS || '').trim().split(/[\s,]+/)[0];
    const before = await fetch(`${API}/v1/tenant/oidc`, { headers: { Authorization: `Bearer ${adminToken}` } });
    assert.equal(before.status, 404, 'the demo tenant has OIDC settings already');
    await page.locator('input[name=oidc-issuer]').fill(`http://${addr}:18083/realms/web`);
    await page.locator('input[name=oidc-audience]').fill('paddock-web');
    await page.locator('input[name=oidc-jwks_url]').fill(`http://${addr}:18083/jwks`);
    await page.locator('input[name=oidc-clock_skew_s]').fill('9999');
    await page.locator('textarea[name=oidc-role_mapping]').fill(JSON.stringify(
      { claim: 'groups', map: { devs: { team, roles: ['viewer'] } } }));
    await page.getByRole('button', { name: 'Save OIDC settings' }).click();
    await page.locator('#oidc-err-clock_skew_s').waitFor({ timeout: 30_000 });
    assert.match(await page.locator('#oidc-err-clock_skew_s').innerText(), /clock_skew_s/);
    assert.equal(await page.locator('input[name=oidc-clock_skew_s]').getAttribute('aria-invalid'), 'true');
    assert.equal((await fetch(`${API}/v1/tenant/oidc`, { headers: { Authorization: `Bearer ${adminToken}` } })).status, 404,
      'a refused PUT stored settings');
    await shot(page, '14-oidc-settings-error-1280');
    await page.locator('input[name=oidc-clock_skew_s]').fill('30');
    await page.getByRole('button', { name: 'Save OIDC settings' }).click();
    await page.getByRole('status').filter({ hasText: 'OIDC settings saved.' }).waitFor({ timeout: 30_000 });
    const oidc = await call('GET', '/v1/tenant/oidc');
    assert.equal(oidc.clock_skew_s, 30);
    assert.equal(oidc.audience, 'paddock-web');
    assert.deepEqual(oidc.role_mapping.map.devs.roles, ['viewer']);
    assert.equal(oidc.client_secret_set, false);
    // a client secret: write-only, the page says it is set and never shows it; removed by its checkbox
    const clientSecret = `cs-${crypto.randomUUID()}`;
    await page.locator('input[name=oidc-client_secret]').fill(clientSecret);
    await page.getByRole('button', { name: 'Save OIDC settings' }).click();
    await page.locator('#oidc-secret-state', { hasText: 'A client secret is set' }).waitFor({ timeout: 30_000 });
    assert.equal((await call('GET', '/v1/tenant/oidc')).client_secret_set, true);
    assert.equal(await page.locator('input[name=oidc-client_secret]').inputValue(), '');
    assert.ok(!(await page.content()).includes(clientSecret), 'the client secret is in the page');
    const inBrowser = await page.evaluate(() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage), document.cookie]));
    assert.ok(!inBrowser.includes(clientSecret), 'the client secret is kept in the browser');
    await page.setViewportSize({ width: 390, height: 844 });
    await shot(page, '14-oidc-settings-390');
    await page.locator('input[name=oidc-clear_secret]').check();
    await page.getByRole('button', { name: 'Save OIDC settings' }).click();
    await page.locator('#oidc-secret-state', { hasText: 'No client secret' }).waitFor({ timeout: 30_000 });
    assert.equal((await call('GET', '/v1/tenant/oidc')).client_secret_set, false);
    await page.getByRole('button', { name: 'Remove OIDC settings' }).click();
    await page.getByRole('status').filter({ hasText: 'OIDC settings removed.' }).waitFor({ timeout: 30_000 });
    assert.equal((await fetch(`${API}/v1/tenant/oidc`, { headers: { Authorization: `Bearer ${adminToken}` } })).status, 404);
    await ctx.close();
  });

  test('the audit log with filters and pages, and its chain verified; an auditor sees it too', async () => {
    // the approval of the profile made in setup is in the chain (delivered asynchronously)
    const want = `/v1/audit?action=catalog.approve&object_id=${prof.id}`;
    let rec;
    for (const end = Date.now() + 60_000; !rec && Date.now() < end; await sleep(500)) rec = (await call('GET', want)).items[0];
    assert.ok(rec, 'the catalog approval is not audited');
    const { ctx, page } = await adminOn('Audit', 'Audit log');
    await page.locator('#audit-verify', { hasText: 'verified' }).waitFor({ timeout: 30_000 });
    // unfiltered: a full page of 50 and the next one after it (setup wrote more than 50 records)
    await page.locator('table.audit tbody tr').nth(49).waitFor({ timeout: 30_000 });
    const first = await page.locator('table.audit tbody tr').evaluateAll((rows) => rows.map((r) => Number(r.dataset.seq)));
    assert.deepEqual(first, (await call('GET', '/v1/audit?limit=50')).items.map((i) => i.seq));
    await shot(page, '15-audit-1280');
    await page.getByRole('button', { name: 'Next page' }).click();
    await page.locator(`table.audit tbody tr[data-seq="${first[49] + 1}"]`).waitFor({ timeout: 30_000 });
    await page.getByRole('button', { name: 'Previous page' }).click();
    await page.locator(`table.audit tbody tr[data-seq="${first[0]}"]`).waitFor({ timeout: 30_000 });
    // filtered: the one record of the approval
    await page.getByLabel('Action (e.g. run.launch)').fill('catalog.approve');
    await page.getByLabel('Object id').fill(prof.id);
    await page.getByLabel('Outcome').selectOption('success');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.locator('#audit-count', { hasText: `Records ${rec.seq} to ${rec.seq}` }).waitFor({ timeout: 30_000 });
    const row = page.locator('table.audit tbody tr');
    assert.equal(await row.count(), 1);
    assert.equal(await row.getAttribute('data-seq'), String(rec.seq));
    assert.ok((await row.innerText()).includes(rec.actor));
    await page.getByLabel('Outcome').selectOption('failure');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.locator('#audit-count', { hasText: 'No records match.' }).waitFor({ timeout: 30_000 });
    await page.setViewportSize({ width: 390, height: 844 });
    await shot(page, '15-audit-filtered-390');
    await ctx.close();
    // the auditor: the audit log and its verification, no administration
    const actx = await context();
    const ap = await actx.newPage();
    await login(ap, auditor);
    assert.equal(await ap.getByRole('link', { name: 'Admin' }).count(), 0);
    await ap.getByRole('link', { name: 'Audit' }).click();
    await ap.locator('#audit-verify', { hasText: 'verified' }).waitFor({ timeout: 30_000 });
    await ap.locator('table.audit tbody tr').first().waitFor({ timeout: 30_000 });
    await shot(ap, '15-audit-auditor-1280');
    await actx.close();
  });

  test('usage per team and per day and team as uPlot charts with their tables, and the governance figures', async () => {
    // billing records a run after its end: wait until the API has the finished runs of the journeys
    let byTeam;
    for (const end = Date.now() + 60_000; Date.now() < end; await sleep(1000)) {
      byTeam = await call('GET', '/v1/usage?group_by=team');
      if (byTeam.items.some((i) => i.team === team && i.runs > 0)) break;
    }
    const mine = byTeam.items.find((i) => i.team === team);
    assert.ok(mine && mine.runs > 0, `no usage recorded for the team: ${JSON.stringify(byTeam)}`);
    const gov = await call('GET', '/v1/governance/metrics');
    const { ctx, page } = await adminOn('Usage', 'Usage');
    const teamSec = page.locator('section[data-group=team]');
    const tr = teamSec.locator(`table.figures tr[data-key="${mine.team_name}"]`);
    await tr.waitFor({ timeout: 30_000 });
    const cells = await tr.locator('td').allInnerTexts();
    assert.ok(Number(cells[0]) >= mine.runs, `runs shown ${cells[0]}, the API had ${mine.runs}`);
    // one uPlot chart per metric, a labelled canvas whose series (legend) are the teams the API's usage has
    const daySec = page.locator('section[data-group=day]');
    const charts = daySec.locator('figure.chart');
    await daySec.locator('figure.chart canvas[role=img]').nth(3).waitFor({ timeout: 30_000 });
    assert.deepEqual(await charts.evaluateAll((fs) => fs.map((f) => f.dataset.metric)), ['runs', 'runtime_seconds', 'tokens', 'cost_usd']);
    const shown = await call('GET', '/v1/usage?group_by=team'); // the page asked a moment ago: no run ended since (the journeys are over)
    const names = shown.items.map((i) => i.team_name).sort();
    for (let c = 0; c < 4; c++) {
      const legend = await charts.nth(c).locator('.u-legend .u-series .u-label').allInnerTexts();
      assert.deepEqual(legend.slice(1).sort(), names, `chart ${c} series`);
      assert.match(await charts.nth(c).locator('canvas[role=img]').getAttribute('aria-label'), new RegExp(`per day per team, .*${mine.team_name} `));
    }
    // each chart's table holds, per day and team, the API's figures of group_by=day for that team
    const near = (shownText, v, tol) => Math.abs(Number(shownText.replace('$', '')) - v) <= tol;
    for (const t of shown.items) {
      const days = await call('GET', `/v1/usage?group_by=day&team=${t.team}`);
      for (const d of days.items) {
        const row = (c) => charts.nth(c).locator(`table.figures tr[data-key="${d.day}"] td[data-team="${t.team_name}"]`);
        assert.equal(await row(0).innerText(), String(d.runs), `runs of ${t.team_name} on ${d.day}`);
        assert.ok(near(await row(1).innerText(), d.runtime_seconds, 0.5), `runtime of ${t.team_name} on ${d.day}`);
        assert.equal(await row(2).innerText(), String(d.tokens_in + d.tokens_out), `tokens of ${t.team_name} on ${d.day}`);
        assert.ok(near(await row(3).innerText(), d.cost_usd, 0.00005), `cost of ${t.team_name} on ${d.day}`);
      }
    }
    // the canvas follows its container's width (1280 and 390 px)
    const width = () => charts.first().locator('canvas').evaluate((c) => c.getBoundingClientRect().width);
    assert.ok(await width() > 400, `chart ${await width()} px wide at 1280`);
    await page.locator('#approval-figures').waitFor({ timeout: 30_000 });
    const figs = await page.locator('#approval-figures dd').allInnerTexts();
    assert.ok(Number(figs[2]) >= gov.approvals.approved && gov.approvals.approved >= 1, `approved ${figs[2]} vs ${gov.approvals.approved}`);
    await shot(page, '16-usage-1280');
    await page.setViewportSize({ width: 390, height: 844 });
    for (const end = Date.now() + 5_000; Date.now() < end && await width() > 390; await sleep(100));
    const w390 = await width();
    assert.ok(w390 <= 390 && w390 >= 200, `chart ${w390} px wide at 390`);
    await shot(page, '16-usage-390');
    await ctx.close();
  });

  test('definitions: a version, two versions side by side, a draft\'s field error at the field, publish', async () => {
    const sb = await sandbox(team, cmd('print("one")', 60));
    const v2spec = cmd('print("two")', 90);
    await call('PUT', `/v1/sandboxes/${sb.id}/draft`, { spec: v2spec });
    await call('POST', `/v1/sandboxes/${sb.id}/versions`);
    const { ctx, page } = await adminOn('Definitions', 'Definitions');
    await page.locator('input[name=def-name]').fill(sb.name);
    await page.locator('input[name=def-name]').press('Tab');
    await page.locator(`tr[data-definition="${sb.name}"] a`).click();
    await page.locator('#version-spec', { hasText: 'print(\\"two\\")' }).waitFor({ timeout: 30_000 });
    await shot(page, '11-definitions-version-1280');
    // v1 against v2 side by side: the changed lines on each side
    const cmpTable = page.locator('section[aria-label="compare versions"] table.diff.side');
    await cmpTable.waitFor({ timeout: 30_000 });
    assert.match(await cmpTable.locator('td.code.d-del').allInnerTexts().then((t) => t.join('\n')), /"timeout_s": 60/);
    assert.match(await cmpTable.locator('td.code.d-add').allInnerTexts().then((t) => t.join('\n')), /"timeout_s": 90/);
    await page.locator('section[aria-label="compare versions"]').scrollIntoViewIfNeeded();
    await shot(page, '11-definitions-compare-1280');
    await page.setViewportSize({ width: 390, height: 844 });
    await shot(page, '11-definitions-compare-390');
    await page.setViewportSize({ width: 1280, height: 900 });
    // a draft the api refuses: its 400 names spec.limits.timeout_s, shown at that line; nothing changes
    const bad = cmd('print("three")', -5);
    const editor = page.locator('textarea[name=draft-json]');
    await editor.fill(JSON.stringify(bad, null, 2));
    await page.getByRole('button', { name: 'Save draft' }).click();
    const fe = page.locator('#draft-field-error');
    await fe.waitFor({ timeout: 30_000 });
    assert.equal(await fe.getAttribute('data-path'), 'spec.limits.timeout_s');
    const want = (await editor.inputValue()).split('\n').findIndex((l) => l.includes('"timeout_s"')) + 1;
    assert.ok(want > 0);
    assert.equal(Number(await fe.getAttribute('data-line')), want);
    assert.equal((await page.locator('.editor .gutter li.err').innerText()).trim(), String(want));
    assert.equal(await editor.getAttribute('aria-invalid'), 'true');
    assert.deepEqual((await call('GET', `/v1/sandboxes/${sb.id}`)).draft.spec, v2spec, 'a refused draft changed the draft');
    await shot(page, '11-definitions-field-error-1280');
    await page.setViewportSize({ width: 390, height: 844 });
    await shot(page, '11-definitions-field-error-390');
    await page.setViewportSize({ width: 1280, height: 900 });
    // fixed, saved, published: v3 as written
    await editor.fill(JSON.stringify(cmd('print("three")', 120), null, 2));
    await page.getByRole('button', { name: 'Save draft' }).click();
    await page.getByRole('status').filter({ hasText: 'Draft saved.' }).waitFor({ timeout: 30_000 });
    assert.equal(await fe.count(), 0);
    await page.getByRole('button', { name: 'Publish draft' }).click();
    await page.getByRole('status').filter({ hasText: 'Published v3.' }).waitFor({ timeout: 30_000 });
    assert.equal((await call('GET', `/v1/sandboxes/${sb.id}/versions/3`)).spec.limits.timeout_s, 120);
    await ctx.close();
  });

  test('CSRF: a cookie write without the session\'s token is refused and changes nothing', async () => {
    const ctx = await context();
    const page = await ctx.newPage();
    const c = creds();
    await login(page, { username: c.username, password: c.password });
    const name = uniq('csrf');
    const res = await page.evaluate(async (n) => {
      const post = (headers) => fetch('/v1/teams', { method: 'POST', credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify({ name: n }) })
        .then(async (r) => ({ status: r.status, code: (await r.json()).code }));
      return [await post({}), await post({ 'X-CSRF-Token': 'f'.repeat(64) })];
    }, name);
    assert.deepEqual(res, [{ status: 403, code: 'csrf_failed' }, { status: 403, code: 'csrf_failed' }]);
    const teams = await call('GET', '/v1/teams');
    const items = Array.isArray(teams) ? teams : teams.items;
    assert.ok(!items.some((t) => t.name === name), 'a refused write created the team');
    // log out: the session ends and the page shows the login form
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByRole('button', { name: 'Log in' }).waitFor();
    assert.equal((await ctx.cookies()).filter((k) => k.name === 'paddock_session').length, 0);
    await ctx.close();
  });
});
