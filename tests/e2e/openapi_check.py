"""Validates real api responses against services/api/openapi.yaml.

`Spec.check(method, url, status, content_type, body)` finds the path template
and method the request matched, the response object of the status (exact, then
"4XX"-style range, then "default"), and validates a JSON body against the
schema of the response's media type with Draft 2020-12, resolving
"#/components/..." references inside the document. It returns a list of
violations (strings); an empty list means the response is described.

`Spec.document_problems(routes_c)` checks the document itself: OpenAPI 3.1.x,
every $ref resolves, every schema is a valid 2020-12 schema, every operation has
a unique camelCase operationId and exactly one tag declared (with a description)
in the top-level tags list, and the paths and methods are exactly the routes of
services/api/routes.c's route table.

Works with jsonschema 4.10 (Debian 12: RefResolver) and >= 4.18 (referencing).
Imported by tests/e2e/conftest.py, which runs every api response of the e2e
suite through it.
"""

import json
import pathlib
import re
import urllib.parse

import jsonschema
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
SPEC_PATH = REPO / "services" / "api" / "openapi.yaml"
ROUTES_C = REPO / "services" / "api" / "routes.c"
DOC_URI = "urn:paddock:openapi"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

try:  # jsonschema >= 4.18
    import referencing
    import referencing.jsonschema

    _HAVE_REFERENCING = True
except ImportError:  # jsonschema 4.10 (Debian 12)
    _HAVE_REFERENCING = False


def _escape(token):
    return str(token).replace("~", "~0").replace("/", "~1")


def _unescape(token):
    return token.replace("~1", "/").replace("~0", "~")


def _format_checker():
    fc = getattr(jsonschema.Draft202012Validator, "FORMAT_CHECKER", None)
    return fc if fc is not None else jsonschema.draft202012_format_checker


class Spec:
    def __init__(self, path=SPEC_PATH):
        self.path = pathlib.Path(path)
        with open(self.path) as f:
            self.doc = yaml.safe_load(f)
        self._templates = []  # (regex, template, number of literal segments)
        for template in (self.doc.get("paths") or {}):
            parts = template.strip("/").split("/")
            rx = "^/" + "/".join("[^/]+" if re.fullmatch(r"\{[^}]+\}", p) else re.escape(p)
                                 for p in parts) + "$"
            literal = sum(1 for p in parts if not p.startswith("{"))
            self._templates.append((re.compile(rx), template, literal))
        # most specific (most literal segments) first, as a router would
        self._templates.sort(key=lambda t: -t[2])
        self._validators = {}
        self._format_checker = _format_checker()
        if _HAVE_REFERENCING:
            resource = referencing.Resource.from_contents(
                self.doc, default_specification=referencing.jsonschema.DRAFT202012)
            self._registry = referencing.Registry().with_resource(DOC_URI, resource)

    # ------------------------------------------------------------ pointers

    def pointer(self, ptr):
        """The node at JSON pointer `ptr` ("#/a/b" or "/a/b"); KeyError if absent."""
        node = self.doc
        ptr = ptr[1:] if ptr.startswith("#") else ptr
        if ptr in ("", "/"):
            return node
        for raw in ptr.lstrip("/").split("/"):
            tok = _unescape(raw)
            if isinstance(node, list):
                node = node[int(tok)]
            elif isinstance(node, dict):
                node = node[tok]
            else:
                raise KeyError(ptr)
        return node

    def _deref(self, node, ptr):
        """Follows OpenAPI-level $refs (response objects); returns (node, pointer)."""
        seen = set()
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/") or ref in seen:
                raise KeyError(f"unresolvable $ref {ref!r} at {ptr}")
            seen.add(ref)
            ptr = ref
            node = self.pointer(ref)
        return node, ptr

    # ------------------------------------------------------------ validation

    def _validator(self, schema_ptr):
        v = self._validators.get(schema_ptr)
        if v is None:
            schema = {"$ref": DOC_URI + schema_ptr}
            if _HAVE_REFERENCING:
                v = jsonschema.Draft202012Validator(schema, registry=self._registry,
                                                    format_checker=self._format_checker)
            else:
                resolver = jsonschema.RefResolver(base_uri=DOC_URI, referrer=self.doc,
                                                  store={DOC_URI: self.doc})
                v = jsonschema.Draft202012Validator(schema, resolver=resolver,
                                                    format_checker=self._format_checker)
            self._validators[schema_ptr] = v
        return v

    def match_path(self, path):
        for rx, template, _ in self._templates:
            if rx.match(path):
                return template
        return None

    def response_object(self, template, method, status):
        """(response object, its pointer) or (None, reason)."""
        item = self.doc["paths"][template]
        op = item.get(method.lower())
        if not isinstance(op, dict):
            return None, f"{method.upper()} {template} is not described"
        responses = op.get("responses") or {}
        base = f"#/paths/{_escape(template)}/{method.lower()}/responses"
        for key in (str(status), f"{str(status)[0]}XX", f"{str(status)[0]}xx", "default"):
            if key in responses:
                return self._deref(responses[key], f"{base}/{_escape(key)}")
        return None, (f"{method.upper()} {template}: status {status} is not described "
                      f"(described: {', '.join(sorted(map(str, responses)))})")

    def check(self, method, url, status, content_type, body, allow_undescribed_path=False):
        """Violations (list of str) of one response. `body` is bytes."""
        path = urllib.parse.urlsplit(url).path
        template = self.match_path(path)
        if template is None:
            # allow_undescribed_path: a path (or method) deliberately not an endpoint
            if not allow_undescribed_path:
                return [f"{method} {path}: path not described in openapi.yaml"]
            # still an error answer of the api: must be a Problem
            return self._check_body("#/components/responses/Problem",
                                    self.pointer("#/components/responses/Problem"),
                                    f"{method} {path} -> {status}", content_type, body)
        if not isinstance(self.doc["paths"][template].get(method.lower()), dict) and allow_undescribed_path:
            return self._check_body("#/components/responses/Problem",
                                    self.pointer("#/components/responses/Problem"),
                                    f"{method} {path} -> {status}", content_type, body)
        resp, ptr = self.response_object(template, method, status)
        if resp is None:
            return [ptr]
        return self._check_body(ptr, resp, f"{method} {template} -> {status}", content_type, body)

    def _check_body(self, ptr, resp, where, content_type, body):
        content = resp.get("content") or {}
        media = (content_type or "").split(";")[0].strip().lower()
        if not body:
            if content and media not in content and not any(k.endswith("/*") for k in content):
                return [f"{where}: empty body, but the spec describes content {sorted(content)}"]
            return []
        if not content:
            return [f"{where}: body of type {media or '(none)'} but the spec describes no content"]
        key = media if media in content else None
        if key is None:
            for k in content:
                if k.endswith("/*") and media.startswith(k[:-1]):
                    key = k
        if key is None:
            return [f"{where}: content type {media or '(none)'} not among {sorted(content)}"]
        if not (key.endswith("/json") or key.endswith("+json")):
            return []  # text, redirects: status and content type only
        try:
            instance = json.loads(body)
        except ValueError as e:
            return [f"{where}: {key} body is not JSON ({e}): {body[:200]!r}"]
        if "schema" not in content[key]:
            return []
        schema_ptr = f"{ptr}/content/{_escape(key)}/schema"
        errors = sorted(self._validator(schema_ptr).iter_errors(instance), key=lambda e: list(e.path))
        out = []
        for e in errors[:5]:
            at = "/".join(str(p) for p in e.absolute_path) or "(root)"
            out.append(f"{where}: body at {at}: {e.message[:300]}")
        return out

    # ------------------------------------------------------------ the document

    def _walk_refs(self, node, ptr, out):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref" and isinstance(v, str):
                    out.append((ptr, v))
                else:
                    self._walk_refs(v, f"{ptr}/{_escape(k)}", out)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                self._walk_refs(v, f"{ptr}/{i}", out)

    def _schemas(self):
        """(pointer, schema) of every component schema and every media-type schema."""
        for name, s in ((self.doc.get("components") or {}).get("schemas") or {}).items():
            yield f"#/components/schemas/{_escape(name)}", s
        containers = [("#/components/responses", (self.doc.get("components") or {}).get("responses") or {})]
        for template, item in (self.doc.get("paths") or {}).items():
            for m in METHODS:
                op = item.get(m)
                if isinstance(op, dict):
                    base = f"#/paths/{_escape(template)}/{m}"
                    containers.append((base + "/responses", op.get("responses") or {}))
                    rb = op.get("requestBody")
                    if isinstance(rb, dict):
                        containers.append((base, {"requestBody": rb}))
        for base, objs in containers:
            for key, obj in objs.items():
                if not isinstance(obj, dict):
                    continue
                for media, mt in (obj.get("content") or {}).items():
                    if isinstance(mt, dict) and "schema" in mt:
                        yield f"{base}/{_escape(key)}/content/{_escape(media)}/schema", mt["schema"]

    def operation_problems(self):
        """What generated clients need of each operation: a unique camelCase
        operationId (it becomes the function name) and exactly one tag that the
        top-level `tags` list declares with a description (it becomes the
        module or service the function lives in)."""
        problems = []
        declared = {}
        for i, tag in enumerate(self.doc.get("tags") or []):
            name = tag.get("name") if isinstance(tag, dict) else None
            if not isinstance(name, str) or not name:
                problems.append(f"tags[{i}]: no name")
                continue
            if name in declared:
                problems.append(f"tags[{i}]: tag {name!r} declared twice")
            if not (isinstance(tag.get("description"), str) and tag["description"].strip()):
                problems.append(f"tags[{i}]: tag {name!r} has no description")
            declared[name] = tag
        seen = {}
        for template, item in (self.doc.get("paths") or {}).items():
            for m in METHODS:
                op = item.get(m)
                if not isinstance(op, dict):
                    continue
                where = f"{m.upper()} {template}"
                op_id = op.get("operationId")
                if not isinstance(op_id, str) or not op_id:
                    problems.append(f"{where}: no operationId")
                elif not re.fullmatch(r"[a-z][A-Za-z0-9]*", op_id):
                    problems.append(f"{where}: operationId {op_id!r} is not camelCase")
                elif op_id in seen:
                    problems.append(f"{where}: operationId {op_id!r} is also that of {seen[op_id]}")
                else:
                    seen[op_id] = where
                tags = op.get("tags")
                if not (isinstance(tags, list) and len(tags) == 1):
                    problems.append(f"{where}: has tags {tags!r}, expected exactly one")
                elif tags[0] not in declared:
                    problems.append(f"{where}: tag {tags[0]!r} is not in the top-level tags list")
                else:
                    declared[tags[0]] = None  # used
        for name, tag in declared.items():
            if tag is not None:
                problems.append(f"tag {name!r} is declared but no operation has it")
        return problems

    def document_problems(self, routes_c=ROUTES_C):
        problems = []
        version = str(self.doc.get("openapi", ""))
        if not re.fullmatch(r"3\.1\.\d+", version):
            problems.append(f"openapi is {version!r}, expected 3.1.x")
        for key in ("info", "paths"):
            if not isinstance(self.doc.get(key), dict):
                problems.append(f"top-level {key} missing")
        refs = []
        self._walk_refs(self.doc, "#", refs)
        for where, ref in refs:
            if not ref.startswith("#/"):
                problems.append(f"{where}: external $ref {ref!r}")
                continue
            try:
                self.pointer(ref)
            except (KeyError, IndexError, ValueError):
                problems.append(f"{where}: $ref {ref!r} does not resolve")
        for ptr, schema in self._schemas():
            try:
                jsonschema.Draft202012Validator.check_schema(schema)
            except jsonschema.SchemaError as e:
                problems.append(f"{ptr}: invalid schema: {e.message[:200]}")
        for template, item in (self.doc.get("paths") or {}).items():
            for m, op in item.items():
                if m in METHODS and not (isinstance(op, dict) and op.get("responses")):
                    problems.append(f"{m.upper()} {template}: no responses")
        problems.extend(self.operation_problems())
        spec_ops = {(m.upper(), t) for t, item in (self.doc.get("paths") or {}).items()
                    for m in item if m in METHODS}
        code_ops = set(routes_from_c(routes_c))
        for op in sorted(code_ops - spec_ops):
            problems.append(f"route {op[0]} {op[1]} of routes.c is not in openapi.yaml")
        for op in sorted(spec_ops - code_ops):
            problems.append(f"{op[0]} {op[1]} of openapi.yaml is not a route of routes.c")
        return problems


def routes_from_c(path=ROUTES_C):
    """(METHOD, pattern) of every entry of the route table in routes.c."""
    text = pathlib.Path(path).read_text()
    start = text.find("api_route routes[]")
    assert start >= 0, "route table `routes[]` not found in routes.c"
    end = text.find("};", start)
    table = text[start:end]
    return re.findall(r'\{\s*"(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS)"\s*,\s*"(/[^"]*)"', table)
