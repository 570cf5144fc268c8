// Uses a client generated from services/api/openapi.yaml by @hey-api/openapi-ts
// (into ./paddock next to this file, at test time) the way a tool would: every
// call is a generated function named by the operation's operationId.
// tests/e2e/test_e2e_openapi.py generates, compiles (tsc) and runs it against
// the local stack:
//
//   PADDOCK_API_URL=http://127.0.0.1:PORT PADDOCK_TENANT=... PADDOCK_USER=... \
//   PADDOCK_PASSWORD=... node dist/client_smoke.js examples/demo-sandbox.json
//
// It logs in, reads the caller's team (getMe), creates a sandbox definition
// with the example's spec under a unique name, publishes it, launches a run and
// reads its status until it ends. The last line of stdout is one JSON object
// {run, sandbox, version, status, statuses}; the exit code is 0 only if the
// run succeeded. Credentials come from the environment, never from argv.

import { readFileSync } from "node:fs";
import { randomUUID } from "node:crypto";

import { createSandbox, getMe, getRun, launchRun, login, publishSandbox } from "./paddock";
import { client } from "./paddock/client.gen";

const TERMINAL = new Set([
  "succeeded", "failed", "cancelled", "timed_out", "limit_exceeded", "rejected",
]);

function need(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

// Network safety: only the local stack on loopback is ever contacted.
function loopbackBase(raw: string): string {
  const u = new URL(raw);
  const host = u.hostname.replace(/^\[|\]$/g, "");
  if (!(host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host))) {
    throw new Error(`refusing to contact non-loopback API URL ${raw}`);
  }
  return raw.replace(/\/+$/, "");
}

// Each generated call answers {data, error, response}; anything but the
// expected status is a failure that names the operation.
function expect<T>(op: string, r: { data?: T; error?: unknown; response?: Response }, status: number): T {
  const got = r.response ? r.response.status : "no response";
  if (got !== status || r.data === undefined) {
    throw new Error(`${op}: expected ${status}, got ${got}: ${JSON.stringify(r.error ?? null)}`);
  }
  return r.data;
}

function step(op: string, detail: string): void {
  console.log(`${op}: ${detail}`);
}

const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));

async function main(): Promise<number> {
  const examplePath = process.argv[2];
  if (!examplePath) throw new Error("usage: client_smoke.js SANDBOX_EXAMPLE_JSON");
  const example = JSON.parse(readFileSync(examplePath, "utf8"));
  const deadlineMs = Date.now() + 1000 * Number(process.env.PADDOCK_SMOKE_TIMEOUT_S ?? "240");

  client.setConfig({ baseUrl: loopbackBase(need("PADDOCK_API_URL")) });

  const session = expect("login", await login({
    body: {
      tenant: need("PADDOCK_TENANT"),
      username: need("PADDOCK_USER"),
      password: need("PADDOCK_PASSWORD"),
    },
  }), 200);
  if (!session.token) throw new Error("login answered without a token");
  step("login", `user ${session.user?.username ?? "?"}, token until ${session.expires_at ?? "?"}`);
  // the generated functions of secured operations send it as a bearer token
  client.setConfig({ auth: session.token });

  const me = expect("getMe", await getMe(), 200);
  const team = me.teams?.[0]?.id;
  if (!team) throw new Error(`the caller belongs to no team: ${JSON.stringify(me)}`);
  step("getMe", `tenant ${me.tenant?.name ?? "?"}, team ${team}`);

  const name = `${example.name ?? "client"}-${randomUUID().slice(0, 8)}`;
  const sandbox = expect("createSandbox", await createSandbox({
    body: { name, team, spec: example.spec },
  }), 201);
  if (!sandbox.id) throw new Error("createSandbox answered without an id");
  step("createSandbox", `${name} = ${sandbox.id}`);

  const published = expect("publishSandbox", await publishSandbox({ path: { id: sandbox.id } }), 201);
  if (typeof published.version !== "number") throw new Error("publishSandbox answered without a version");
  step("publishSandbox", `version ${published.version}`);

  const queued = expect("launchRun", await launchRun({
    body: { sandbox: sandbox.id, version: published.version, team },
  }), 202);
  if (!queued.id || queued.status !== "queued") {
    throw new Error(`launchRun answered ${JSON.stringify(queued)}`);
  }
  step("launchRun", `run ${queued.id} ${queued.status}`);

  // every distinct status seen, in order, for the report
  const statuses: string[] = [queued.status];
  let status: string = queued.status;
  while (!TERMINAL.has(status)) {
    if (Date.now() > deadlineMs) throw new Error(`run ${queued.id} still ${status} at the deadline`);
    await sleep(500);
    const run = expect("getRun", await getRun({ path: { id: queued.id } }), 200);
    status = run.status ?? "(none)";
    if (statuses[statuses.length - 1] !== status) {
      statuses.push(status);
      step("getRun", status);
    }
  }

  console.log(JSON.stringify({
    run: queued.id, sandbox: sandbox.id, version: published.version, status, statuses,
  }));
  return status === "succeeded" ? 0 : 1;
}

main().then(
  (code) => { process.exitCode = code; },
  (err) => { console.error(`client_smoke: ${err instanceof Error ? err.message : String(err)}`); process.exitCode = 2; },
);
