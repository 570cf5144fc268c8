// Offline checks of the Kubernetes package (deploy/k8s): renders a
// kustomization with `kubectl kustomize` and holds every object to
//   * the Kubernetes API schemas: kubernetes-models (types, enums, required
//     fields) and @kubernetes/client-node's type map (no unknown field, as
//     the API server's strict field validation);
//   * the CRDs' schemas: Strimzi from schemas/ (written down here, unknown
//     fields refused), Prometheus Operator, Gateway API and External Secrets
//     from their kubernetes-models packages (types and required fields);
//   * the package's own rules (README "Install on Kubernetes"): Pod Security
//     level per namespace, probes and resource requests on every service,
//     one image, no service-account token, contained runners, the migration
//     Job named by the release, topics rendered from deploy/topics.txt.
// An object of a kind none of these knows is an error, not a pass.
//
// usage: node validate.mjs --node-modules DIR [--kubectl PATH] DIR...
//        node validate.mjs --node-modules DIR [--kubectl PATH] --refusals FILE
// The second form reads lines "DIR<TAB>REGEX" (refusals.tsv: the negative
// fixtures) and passes only when each DIR is refused with an error matching
// its REGEX, when rendering it or checking what it renders.
import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync, existsSync } from "node:fs";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, "../..");

// The only namespace whose pods may be privileged (docs/ARCHITECTURE.md §5).
const PRIVILEGED_NAMESPACE = "paddock-runners";
const DAEMONS = ["paddock-api", "paddock-scheduler", "paddock-evidence", "paddock-billing", "paddock-runner-agent"];

function arg(name, def) {
  const i = process.argv.indexOf(name);
  if (i < 0) return def;
  const v = process.argv[i + 1];
  process.argv.splice(i, 2);
  return v;
}

let NM; // node_modules
async function load(path) {
  return import(pathToFileURL(join(NM, path)).href);
}

// ---------------------------------------------------------------- schemas

let clientModels; // @kubernetes/client-node's generated models
let ajv;
const strimzi = {};

async function setup(nodeModules) {
  NM = nodeModules;
  clientModels = await load("@kubernetes/client-node/dist/gen/models/ObjectSerializer.js");
  const Ajv = (await load("ajv/dist/2019.js")).default;
  ajv = new Ajv({ allErrors: true, strict: false });
  const dir = join(HERE, "schemas");
  const schemas = readdirSync(dir).filter((f) => f.endsWith(".json")).map((f) => JSON.parse(readFileSync(join(dir, f), "utf8")));
  for (const s of schemas) ajv.addSchema(s);
  for (const s of schemas) strimzi[s.$id.replace(/\.json$/, "")] = ajv.getSchema(s.$id);
}

// Where a kind's kubernetes-models class lives, by API group.
const MODEL_PACKAGES = {
  "": "kubernetes-models/v1",
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator/monitoring.coreos.com",
  "gateway.networking.k8s.io": "@kubernetes-models/gateway-api/gateway.networking.k8s.io",
  "external-secrets.io": "@kubernetes-models/external-secrets/external-secrets.io",
};
// Groups whose objects are also held to client-node's type map (the
// Kubernetes API itself; the CRD packages carry no such map).
const CORE_GROUPS = new Set(["", "apps", "batch", "policy", "networking.k8s.io", "autoscaling", "scheduling.k8s.io", "rbac.authorization.k8s.io"]);

function splitApiVersion(apiVersion) {
  const i = apiVersion.lastIndexOf("/");
  return i < 0 ? ["", apiVersion] : [apiVersion.slice(0, i), apiVersion.slice(i + 1)];
}

function where(o) {
  return `${o.kind} ${o.metadata?.namespace ? o.metadata.namespace + "/" : ""}${o.metadata?.name}`;
}

// The type map's name for a type: "Array<V1Container>" -> element type, etc.
function walkUnknown(value, type, path, errors) {
  if (value === null || value === undefined) return;
  let m = /^Array<(.+)>$/.exec(type);
  if (m) {
    if (Array.isArray(value)) value.forEach((v, i) => walkUnknown(v, m[1], `${path}[${i}]`, errors));
    return;
  }
  m = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (m) {
    if (typeof value === "object") for (const [k, v] of Object.entries(value)) walkUnknown(v, m[1], `${path}.${k}`, errors);
    return;
  }
  const cls = clientModels[type];
  if (!cls || !cls.attributeTypeMap || typeof value !== "object" || Array.isArray(value)) return;
  const attrs = new Map(cls.attributeTypeMap.map((a) => [a.baseName, a.type]));
  for (const [k, v] of Object.entries(value)) {
    if (!attrs.has(k)) errors.push(`${path}: unknown field "${k}" (${type})`);
    else walkUnknown(v, attrs.get(k), `${path}.${k}`, errors);
  }
}

async function schemaErrors(o) {
  const errors = [];
  if (!o || typeof o.apiVersion !== "string" || typeof o.kind !== "string") return [`an object without apiVersion and kind`];
  const [group, version] = splitApiVersion(o.apiVersion);
  const w = where(o);
  const strimziKey = `${group}_${version}_${o.kind}`;
  if (group === "kafka.strimzi.io") {
    const v = strimzi[strimziKey];
    if (!v) return [`${w}: no schema for ${o.apiVersion} ${o.kind} in tests/k8s/schemas`];
    if (!v(o)) for (const e of v.errors) errors.push(`${w}: ${e.instancePath || "/"} ${e.message}${e.params?.additionalProperty ? ` "${e.params.additionalProperty}" (unknown field)` : ""}`);
    return errors;
  }
  const base = group in MODEL_PACKAGES ? `${MODEL_PACKAGES[group]}/${group === "" ? "" : version + "/"}` : `kubernetes-models/${group}/${version}/`;
  const file = join(NM, base, `${o.kind}.js`);
  if (!existsSync(file)) return [`${w}: no schema for ${o.apiVersion} ${o.kind}`];
  const mod = await import(pathToFileURL(file).href);
  const Cls = mod[o.kind] || mod.default;
  try {
    new Cls(o).validate();
  } catch (e) {
    errors.push(`${w}: ${e.message}`);
  }
  if (CORE_GROUPS.has(group)) {
    const typeName = `V${version.slice(1, 2).toUpperCase()}${version.slice(2)}${o.kind}`;
    const cls = clientModels[typeName];
    if (!cls) errors.push(`${w}: no type map for ${typeName}`);
    else walkUnknown(o, typeName, w, errors);
  }
  return errors;
}

// ---------------------------------------------------------------- rules

function podSpecOf(o) {
  if (["Deployment", "DaemonSet", "StatefulSet", "Job", "ReplicaSet"].includes(o.kind)) return o.spec?.template?.spec;
  if (o.kind === "CronJob") return o.spec?.jobTemplate?.spec?.template?.spec;
  if (o.kind === "Pod") return o.spec;
  return null;
}

const RESTRICTED_VOLUMES = ["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"];

// Pod Security Standards (kubernetes.io/docs/concepts/security/pod-security-standards):
// baseline and restricted, the checks the admission controller makes.
function podSecurityErrors(spec, level, w) {
  const errors = [];
  if (level === "privileged") return errors;
  const containers = [...(spec.initContainers || []), ...(spec.containers || []), ...(spec.ephemeralContainers || [])];
  const psc = spec.securityContext || {};
  if (spec.hostNetwork || spec.hostPID || spec.hostIPC) errors.push(`${w}: host namespaces are not allowed at ${level}`);
  for (const v of spec.volumes || []) {
    if (v.hostPath) errors.push(`${w}: hostPath volume "${v.name}" is not allowed at ${level}`);
    if (level === "restricted" && !RESTRICTED_VOLUMES.some((t) => t in v)) errors.push(`${w}: volume "${v.name}" has a type restricted does not allow`);
  }
  for (const c of containers) {
    const sc = c.securityContext || {};
    const cw = `${w} container ${c.name}`;
    if (sc.privileged) errors.push(`${cw}: privileged is not allowed at ${level}`);
    for (const p of c.ports || []) if (p.hostPort) errors.push(`${cw}: hostPort is not allowed at ${level}`);
    const add = sc.capabilities?.add || [];
    if (level === "restricted") {
      if (sc.allowPrivilegeEscalation !== false) errors.push(`${cw}: allowPrivilegeEscalation must be false at restricted`);
      if ((sc.runAsNonRoot ?? psc.runAsNonRoot) !== true) errors.push(`${cw}: runAsNonRoot must be true at restricted`);
      if ((sc.runAsUser ?? psc.runAsUser) === 0) errors.push(`${cw}: runAsUser 0 is not allowed at restricted`);
      const seccomp = (sc.seccompProfile || psc.seccompProfile || {}).type;
      if (seccomp !== "RuntimeDefault" && seccomp !== "Localhost") errors.push(`${cw}: seccompProfile must be RuntimeDefault or Localhost at restricted`);
      if (!(sc.capabilities?.drop || []).includes("ALL")) errors.push(`${cw}: capabilities must drop ALL at restricted`);
      for (const cap of add) if (cap !== "NET_BIND_SERVICE") errors.push(`${cw}: capability ${cap} is not allowed at restricted`);
    }
  }
  return errors;
}

function quantityPresent(res, kind, what) {
  return res && res[kind] && res[kind][what] !== undefined && res[kind][what] !== null && res[kind][what] !== "";
}

function cidrContains(cidr, ip) {
  const [net, bits] = cidr.split("/");
  if (net.includes(":") || ip.includes(":")) return false;
  const toInt = (a) => a.split(".").reduce((n, x) => n * 256 + Number(x), 0);
  const b = Number(bits);
  if (b === 0) return true;
  const mask = b === 32 ? 0xffffffff : (0xffffffff << (32 - b)) >>> 0;
  return ((toInt(net) & mask) >>> 0) === ((toInt(ip) & mask) >>> 0);
}

function cidrCovers(outer, inner) {
  const [net, bits] = inner.split("/");
  return Number(outer.split("/")[1]) <= Number(bits) && cidrContains(outer, net);
}

// Addresses a runner must never reach (docs/ARCHITECTURE.md §5).
const RUNNER_NEVER = ["169.254.169.254"];

function ruleErrors(objects) {
  const errors = [];
  const byKind = (k) => objects.filter((o) => o.kind === k);
  const namespaces = new Map(byKind("Namespace").map((n) => [n.metadata.name, n]));
  const images = new Set();
  const priorityClasses = new Set(byKind("PriorityClass").map((p) => p.metadata.name));
  const serviceAccounts = new Map(byKind("ServiceAccount").map((s) => [`${s.metadata.namespace}/${s.metadata.name}`, s]));

  for (const [name, ns] of namespaces) {
    const level = ns.metadata.labels?.["pod-security.kubernetes.io/enforce"];
    if (!level) errors.push(`Namespace ${name}: no pod-security.kubernetes.io/enforce label`);
    else if (level !== "restricted" && name !== PRIVILEGED_NAMESPACE) errors.push(`Namespace ${name}: enforces "${level}", only ${PRIVILEGED_NAMESPACE} may be below restricted`);
  }
  for (const sa of serviceAccounts.values())
    if (sa.automountServiceAccountToken !== false) errors.push(`${where(sa)}: automountServiceAccountToken must be false`);

  const namespacesWithPods = new Set();
  for (const o of objects) {
    const spec = podSpecOf(o);
    if (!spec) continue;
    const w = where(o);
    const ns = o.metadata.namespace;
    namespacesWithPods.add(ns);
    const nsObj = namespaces.get(ns);
    if (!nsObj) errors.push(`${w}: its namespace ${ns} is not part of the package (no Pod Security level)`);
    const level = nsObj?.metadata.labels?.["pod-security.kubernetes.io/enforce"] || "restricted";
    errors.push(...podSecurityErrors(spec, level, w));
    if (spec.automountServiceAccountToken !== false) errors.push(`${w}: automountServiceAccountToken must be false`);
    if (!spec.serviceAccountName || spec.serviceAccountName === "default") errors.push(`${w}: runs as the default ServiceAccount`);
    else if (!serviceAccounts.has(`${ns}/${spec.serviceAccountName}`)) errors.push(`${w}: ServiceAccount ${spec.serviceAccountName} is not in the package`);
    const isService = o.kind !== "Job" && o.kind !== "CronJob";
    const all = [...(spec.initContainers || []).map((c) => [c, true]), ...(spec.containers || []).map((c) => [c, false])];
    for (const [c, init] of all) {
      const cw = `${w} container ${c.name}`;
      images.add(c.image);
      if (!/[:@]/.test((c.image || "").split("/").pop()) || /:latest$/.test(c.image)) errors.push(`${cw}: image "${c.image}" names no version`);
      for (const what of ["cpu", "memory"])
        if (!quantityPresent(c.resources, "requests", what)) errors.push(`${cw}: no resource request for ${what}`);
      if (!quantityPresent(c.resources, "limits", "memory")) errors.push(`${cw}: no memory limit`);
      if (isService && !init) {
        for (const p of ["startupProbe", "livenessProbe", "readinessProbe"]) {
          if (!c[p]) errors.push(`${cw}: no ${p}`);
          else if (c[p].timeoutSeconds === undefined) errors.push(`${cw}: ${p} has no timeoutSeconds (the default 1 s must be a choice)`);
        }
        if (c.livenessProbe && c.readinessProbe && c.livenessProbe.httpGet?.path === "/readyz")
          errors.push(`${cw}: livenessProbe checks dependencies (/readyz): an outage would restart every pod`);
      }
    }
    if (ns === PRIVILEGED_NAMESPACE) {
      // runners: Guaranteed QoS, their own pool, their own priority, drained updates
      for (const [c] of all)
        for (const what of ["cpu", "memory"])
          if (!quantityPresent(c.resources, "limits", what) || String(c.resources.limits[what]) !== String(c.resources.requests?.[what]))
            errors.push(`${w} container ${c.name}: ${what} requests must equal limits (Guaranteed QoS)`);
      if (!spec.nodeSelector || Object.keys(spec.nodeSelector).length === 0) errors.push(`${w}: no nodeSelector for the runner pool`);
      if (!(spec.tolerations || []).length) errors.push(`${w}: no toleration of the runner pool's taint`);
      if (!spec.priorityClassName || !priorityClasses.has(spec.priorityClassName)) errors.push(`${w}: no PriorityClass of the package`);
      if (o.kind === "DaemonSet" && o.spec.updateStrategy?.type !== "OnDelete") errors.push(`${w}: updateStrategy must be OnDelete (an update drains runs, docs)`);
    }
  }
  if (images.size > 1) errors.push(`more than one image: ${[...images].join(", ")} (set it once, in the overlay's images:)`);

  // default deny wherever pods run
  const policies = byKind("NetworkPolicy");
  for (const ns of namespacesWithPods) {
    const deny = policies.find((p) => p.metadata.namespace === ns && Object.keys(p.spec.podSelector || {}).length === 0 &&
      (p.spec.policyTypes || []).includes("Ingress") && (p.spec.policyTypes || []).includes("Egress") && !p.spec.ingress && !p.spec.egress);
    if (!deny) errors.push(`namespace ${ns}: no default-deny NetworkPolicy`);
  }
  // runners never reach the cluster's ranges or the metadata service
  const runnerCfg = byKind("ConfigMap").find((c) => c.metadata.namespace === PRIVILEGED_NAMESPACE && c.data?.PADDOCK_EGRESS_FLOOR);
  const clusterRanges = (runnerCfg?.data.PADDOCK_EGRESS_FLOOR || "").split(",").filter(Boolean);
  if (!clusterRanges.length) errors.push(`namespace ${PRIVILEGED_NAMESPACE}: no PADDOCK_EGRESS_FLOOR naming the cluster's ranges`);
  for (const p of policies.filter((p) => p.metadata.namespace === PRIVILEGED_NAMESPACE)) {
    for (const rule of p.spec.egress || []) {
      if (!rule.to || rule.to.length === 0) errors.push(`${where(p)}: an egress rule to anywhere`);
      for (const peer of rule.to || []) {
        const b = peer.ipBlock;
        if (!b) continue;
        const except = b.except || [];
        for (const ip of RUNNER_NEVER)
          if (cidrContains(b.cidr, ip) && !except.some((e) => cidrContains(e, ip))) errors.push(`${where(p)}: egress to ${b.cidr} reaches ${ip}`);
        for (const r of clusterRanges)
          if (cidrContains(b.cidr, r.split("/")[0]) && !except.some((e) => cidrCovers(e, r))) errors.push(`${where(p)}: egress to ${b.cidr} reaches the cluster range ${r}`);
      }
    }
  }

  // the migration Job is named by the release (the api image's tag)
  const api = byKind("Deployment").find((d) => d.metadata.name === "paddock-api");
  const migrate = byKind("Job").filter((j) => j.metadata.name.startsWith("paddock-migrate"));
  if (api && migrate.length !== 1) errors.push(`expected one migration Job, found ${migrate.length}`);
  if (api && migrate.length === 1) {
    const image = api.spec.template.spec.containers.find((c) => c.name === "api").image.split("@")[0];
    const tag = image.slice(image.lastIndexOf(":") + 1);
    if (migrate[0].metadata.name !== `paddock-migrate-${tag}`) errors.push(`${where(migrate[0])}: not named by the release ${tag}`);
  }
  // every daemon a Deployment or DaemonSet
  if (api)
    for (const d of DAEMONS)
      if (!objects.some((o) => (o.kind === "Deployment" || o.kind === "DaemonSet") && o.metadata.name === d)) errors.push(`no workload ${d}`);

  // Kafka: the topics are deploy/topics.txt's, in the Kafka namespace
  const topics = byKind("KafkaTopic");
  if (topics.length || api) {
    const want = readFileSync(join(REPO, "deploy/topics.txt"), "utf8").split("\n").filter((l) => l.trim() && !l.startsWith("#"))
      .map((l) => l.trim().split(/\s+/));
    const have = new Map(topics.map((t) => [t.spec.topicName, t]));
    for (const [name, partitions, replicas] of want) {
      const t = have.get(name);
      if (!t) errors.push(`no KafkaTopic for ${name} (deploy/topics.txt): run deploy/k8s/render-topics.sh > deploy/k8s/base/kafka/topics.yaml`);
      else if (t.spec.partitions !== Number(partitions) || t.spec.replicas !== Number(replicas)) errors.push(`${where(t)}: partitions/replicas differ from deploy/topics.txt`);
      have.delete(name);
    }
    for (const name of have.keys()) errors.push(`KafkaTopic ${name} is not in deploy/topics.txt`);
    const topicNames = new Set(want.map((w) => w[0]));
    for (const o of [...topics, ...byKind("KafkaUser")]) {
      if (o.metadata.namespace !== "kafka") errors.push(`${where(o)}: not in the Kafka namespace (kafka), where the operators watch`);
      if (!o.metadata.labels?.["strimzi.io/cluster"]) errors.push(`${where(o)}: no strimzi.io/cluster label`);
    }
    for (const u of byKind("KafkaUser")) {
      if (u.spec.authentication?.type !== "scram-sha-512") errors.push(`${where(u)}: authentication must be scram-sha-512`);
      for (const acl of u.spec.authorization?.acls || [])
        if (acl.resource.type === "topic" && (acl.resource.patternType !== "literal" || !topicNames.has(acl.resource.name)))
          errors.push(`${where(u)}: an ACL on topic "${acl.resource.name}" that is not one literal topic of deploy/topics.txt`);
    }
  }
  return errors;
}

// ---------------------------------------------------------------- main

export async function checkDir(dir, kubectl) {
  let out;
  try {
    out = execFileSync(kubectl, ["kustomize", dir], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], maxBuffer: 64 << 20 });
  } catch (e) {
    return { objects: [], errors: [`kubectl kustomize ${dir} failed: ${(e.stderr || e.message).trim()}`] };
  }
  const YAML = await load("yaml/dist/index.js");
  const objects = YAML.parseAllDocuments(out).map((d) => d.toJS()).filter((o) => o);
  const errors = [];
  for (const o of objects) errors.push(...(await schemaErrors(o)));
  errors.push(...ruleErrors(objects));
  return { objects, errors };
}

async function main() {
  const nm = arg("--node-modules");
  const kubectl = arg("--kubectl", "kubectl");
  const refusals = arg("--refusals");
  const expected = new Map();
  if (refusals)
    for (const line of readFileSync(refusals, "utf8").split("\n")) {
      if (!line.trim() || line.startsWith("#")) continue;
      const [dir, re] = line.split("\t");
      expected.set(join(dirname(refusals), dir), re);
    }
  const dirs = refusals ? [...expected.keys()] : process.argv.slice(2);
  if (!nm || dirs.length === 0 || (refusals && process.argv.length > 2)) {
    console.error("usage: validate.mjs --node-modules DIR [--kubectl PATH] (--refusals FILE | DIR...)");
    process.exit(64);
  }
  await setup(resolve(nm));
  let failed = 0;
  for (const dir of dirs) {
    const { objects, errors } = await checkDir(dir, kubectl);
    const expect = expected.get(dir);
    if (expect) {
      const re = new RegExp(expect);
      const hit = errors.find((e) => re.test(e));
      if (hit) console.log(`ok: ${dir} is refused: ${hit}`);
      else {
        console.log(`FAIL: ${dir} was expected to be refused with /${expect}/; errors: ${errors.length ? errors.join("; ") : "none"}`);
        failed++;
      }
      continue;
    }
    for (const e of errors) console.log(`${dir}: ${e}`);
    console.log(`${dir}: ${objects.length} objects, ${errors.length} errors`);
    if (errors.length) failed++;
  }
  console.log(`${dirs.length - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
