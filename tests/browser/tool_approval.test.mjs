// The tool-call approval journey in Debian's chromium (issue 13, with issue
// 12's hook bridge: docs/CONTRACTS.md "Hook bridge"). A real Claude Code run
// in the node-agents image, against the model simulator (tests/modelsim, HTTPS
// with a certificate of the stack's test CA, in the stack's test upstream
// network, as tests/e2e/test_e2e_policy_hooks.py runs it), has its
// `git push` held by an `ask` rule of spec.policy. The launcher sees the call
// in the approvals queue but its Approve is refused (four eyes). An approver
// finds it there with its tool, command and input, approves it in the page,
// and sees on the run page that the call completed with that approval and
// that the run continued: the next call shows the bare repo has the pushed
// commit, and the run succeeds.
//
// The node-agents image is built by ctest's e2e.agents_image (a fixture this
// journey's ctest requires); run alone without it, the journey fails saying so.
// Network: the browser reaches 127.0.0.1 only (the agent's model calls go
// from the runner's gateway to the simulator, never from the browser).
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { adminLogin, apiCall, approveFromQueue, assertNoTokenExposed, checkedShot as shot, creds, launchChromium,
  login, loopbackContext, newMember, uniq } from './helpers.mjs';

const IMAGE = 'node-agents';
const MODEL = 'claude-sonnet-4-5';
const T = 300_000; // a CLI run in a fresh sandbox, on a shared and slow machine
const REPO = path.resolve(import.meta.dirname, '../..');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// a repo with one commit and a bare remote inside the workspace (never a network host)
const SETUP = 'git init -q -b main . && git -c user.email=a@example.invalid -c user.name=agent commit -q ' +
  '--allow-empty -m one && git init -q --bare /workspace/remote.git && git remote add origin /workspace/remote.git ' +
  '&& echo setup-ok';
const PUSH = 'git push origin main';
const PUSHED = 'echo PUSHED-main=$(git --git-dir=/workspace/remote.git rev-parse -q --verify main || echo none)';
const USAGE = { input_tokens: 120, output_tokens: 30, cache_read_tokens: 0, cache_write_tokens: 0 };
const bash = (command, description) =>
  ({ tool_calls: [{ name: 'Bash', input: { command, description } }], usage: USAGE });
// the model's turns: one call each, then the end
const SCRIPT = { anthropic: [bash(SETUP, 'set up a repo'), bash(PUSH, 'push the work'),
  bash(PUSHED, 'check the remote'), { text: 'All done.', usage: USAGE }] };

let adminToken, team, approver, sim, tmp, browser, runId;
const seen = { offLoopback: [], urls: [], dialogs: [] };
const call = (method, p, body) => apiCall(adminToken, method, p, body);

// The simulator inside the test upstream network namespace (the gateway's
// upstream is an "outside" host), serving a leaf of the stack's test CA.
async function startSim(dir) {
  const env = process.env;
  const addrs = (env.PADDOCK_TEST_UPSTREAM_ADDRS || '').trim().split(/[\s,]+/);
  assert.ok(addrs.length > 3 && env.PADDOCK_TEST_NETNS && env.PADDOCK_TEST_CA_KEY,
    'PADDOCK_TEST_NETNS/PADDOCK_TEST_UPSTREAM_ADDRS/PADDOCK_TEST_CA_KEY are not set (endpoints.env)');
  const host = addrs[3];
  const f = (n) => path.join(dir, n);
  fs.writeFileSync(f('sim.ext'), `subjectAltName=IP:${host}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
  const ssl = (...args) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  ssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${host}`,
    '-keyout', f('sim.key'), '-out', f('sim.csr'));
  ssl('x509', '-req', '-in', f('sim.csr'), '-CA', env.PADDOCK_TEST_CA_CERT, '-CAkey', env.PADDOCK_TEST_CA_KEY,
    '-set_serial', `0x${Date.now().toString(16)}`, '-days', '1', '-extfile', f('sim.ext'), '-out', f('sim.crt'));
  fs.writeFileSync(f('script.json'), JSON.stringify(SCRIPT));
  const child = spawn('nsenter', [`--net=${env.PADDOCK_TEST_NETNS}`, '/usr/bin/python3',
    path.join(REPO, 'tests/modelsim/modelsim.py'), 'serve', '--script', f('script.json'), '--log', f('modelsim.jsonl'),
    '--https-port', '0', '--cert', f('sim.crt'), '--key', f('sim.key'), '--host', host],
  { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((resolve, reject) => {
    child.on('exit', (code) => reject(new Error(`the model simulator exited (${code})`)));
    readline.createInterface({ input: child.stdout }).once('line', (line) => resolve(JSON.parse(line).https));
  });
  return { child, upstream: `https://${host}:${port}`, log: f('modelsim.jsonl') };
}

// The image on a ready node (the runner reports its cache in its heartbeat)
async function needImage() {
  const has = async () => (await call('GET', '/v1/nodes')).items.some((n) => n.state === 'ready' &&
    (n.images || []).includes(IMAGE));
  for (const end = Date.now() + 60_000; Date.now() < end; await sleep(2000)) if (await has()) return;
  assert.fail(`no ready node has the ${IMAGE} image: build it first with ` +
    '`ctest --test-dir <build> -R e2e.agents_image` (about 6 minutes, once per machine; ' +
    'ctest runs it before browser.tool_approval by itself)');
}

async function approved(kind, body) {
  const item = await call('POST', `/v1/catalog/${kind}`, { name: uniq(kind), body });
  await call('POST', `/v1/catalog/${kind}/${item.id}/approve`, { content_sha256: item.content_sha256 });
  return item.id;
}

describe('tool-call approval', { timeout: 1_200_000 }, () => {
  before(async () => {
    adminToken = await adminLogin();
    team = (await call('GET', '/v1/me')).teams[0].id;
    await needImage();
    approver = await newMember(adminToken, team, ['approver', 'viewer', 'reviewer']);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'paddock-tool-approval-'));
    sim = await startSim(tmp);
    // the team's real key, sealed to the run by the gateway; the simulator receives it
    const keyName = `WEB_TOOL_KEY_${Date.now().toString(36).toUpperCase()}`;
    await call('PUT', `/v1/teams/${team}/secrets/${keyName}`, { value: `sk-web-${uniq('key')}` });
    const models = await approved('models', { description: 'the model simulator', provider: 'anthropic',
      upstream: sim.upstream, key_secret: keyName,
      models: [{ id: MODEL, usd_per_mtok: { input: 3.0, output: 15.0, cache_read: 0.3, cache_write: 3.75 } }] });
    const template = await approved('prompt-templates', { body: '{{task}}',
      variables: { task: { type: 'text', required: true, max_length: 4000 } } });
    const spec = { agent: { type: 'claude-code', model: MODEL }, image: IMAGE, models: [models],
      limits: { timeout_s: 900, memory_mb: 2048 }, prompt: { template },
      policy: { rules: [{ match: { tool: 'Bash', command: 'git push*' }, action: 'ask' }], ask_timeout_s: 900 } };
    const sb = await call('POST', '/v1/sandboxes', { name: uniq('web-tool'), team, spec });
    const { version } = await call('POST', `/v1/sandboxes/${sb.id}/versions`);
    runId = (await call('POST', '/v1/runs', { sandbox: sb.id, version, prompt_vars: { task: 'push the work' } })).id;
    browser = await launchChromium();
  });

  after(async () => {
    if (browser) await browser.close();
    // a journey that failed half way leaves no run behind
    if (runId && adminToken) await apiCall(adminToken, 'POST', `/v1/runs/${runId}/cancel`, undefined,
      [200, 202, 204, 409]);
    if (sim) sim.child.kill('SIGTERM');
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    assert.deepEqual(seen.offLoopback, [], `the browser tried to leave loopback: ${seen.offLoopback.join(', ')}`);
    assert.deepEqual(seen.dialogs, [], `a dialog opened: ${seen.dialogs.join(', ')}`);
  });

  // the queue polls: the card comes once the CLI's hook asked
  async function queueCard(page) {
    await page.getByRole('link', { name: 'Approvals' }).click();
    await page.getByRole('heading', { name: 'Approvals' }).waitFor();
    const card = page.locator('li.approval', { has: page.locator(`a[href="#/runs/${runId}"]`) });
    await card.waitFor({ timeout: T });
    return card;
  }

  test('the launcher is shown the held call but its approval is refused (four eyes)', async () => {
    const ctx = await loopbackContext(browser, seen);
    const page = await ctx.newPage();
    await login(page, creds());
    const card = await queueCard(page);
    await card.getByRole('button', { name: 'Approve' }).click();
    await card.getByRole('alert').filter({ hasText: 'four eyes' }).waitFor({ timeout: 30_000 });
    const pending = await call('GET', `/v1/approvals/${await card.getAttribute('data-approval')}`);
    assert.equal(pending.status, 'pending', 'the launcher\'s refused approval decided it');
    await shot(page, '17-tool-approval-launcher-refused-1280');
    await ctx.close();
  });

  test('an approver approves a held git push from the queue and the run continues', async () => {
    const ctx = await loopbackContext(browser, seen);
    const page = await ctx.newPage();
    await login(page, approver);
    const card = await queueCard(page);
    const approvalId = await card.getAttribute('data-approval');
    assert.equal((await call('GET', `/v1/runs/${runId}`)).status, 'awaiting_approval');
    // what is asked: the tool, its command, the rule, and the call's whole input
    assert.equal((await card.locator('h2').innerText()).trim(), `tool: Bash ${PUSH}`);
    const text = await card.innerText();
    assert.match(text, /rule spec\.policy\.rules\[0\]/);
    assert.match(text, /Input of the Bash call:/);
    const input = JSON.parse(await card.locator(':scope > pre.json').innerText());
    assert.deepEqual(input, { command: PUSH, description: 'push the work' });
    await approveFromQueue(page, card, runId, 'push approved in the browser', '17-tool-approval', T);

    // the run page: the held call completed with that approval, then the next call
    const held = page.locator('li.event[data-kind=tool_result]', { hasText: `(approval ${approvalId})` });
    await held.waitFor({ timeout: T });
    assert.match(await held.innerText(), new RegExp(`Bash\\s+completed.*allow \\(approval ${approvalId}\\)`, 's'));
    const next = page.locator('li.event[data-kind=tool_result]', { hasText: 'PUSHED-main=' });
    await next.waitFor({ timeout: T });
    assert.ok(Number(await next.getAttribute('data-seq')) > Number(await held.getAttribute('data-seq')),
      'the call after the approved one came before it');
    // a person opens the call's result: the bare repo has the pushed commit
    await next.locator('summary', { hasText: 'result' }).click();
    assert.match(await next.locator('pre.json').innerText(), /PUSHED-main=[0-9a-f]{40}/);
    await page.locator('#run-status', { hasText: 'succeeded' }).waitFor({ timeout: T });
    // who approved what, on the run's evidence (the approver reviews too)
    const row = page.locator(`section[aria-label="approvals and reviews"] tr[data-approval="${approvalId}"]`);
    await row.waitFor({ timeout: 30_000 });
    assert.match(await row.innerText(), new RegExp(`approve\\s+user:${approver.id}`));
    // the model played its last turn (after the check of the remote): the CLI went on to the end
    const turns = fs.readFileSync(sim.log, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l).turn);
    assert.ok(turns.includes(SCRIPT.anthropic.length - 1), `the model simulator played turns ${turns.join(',')}`);
    await held.scrollIntoViewIfNeeded();
    await shot(page, '17-tool-approval-run-1280');
    await assertNoTokenExposed(page, ctx, seen.urls);
    await ctx.close();
  });
});
