#!/usr/bin/python3
"""Writes the generated part of the seed corpora (tests/fuzz/README.md):
requests, tokens, key sets, bus messages, hook frames, S3 error documents,
specs. The ClientHellos of corpus/tls_sni are captured from real clients
instead (capture_hellos.sh). Run from anywhere; rewrites only the files it
names (corpus files found by fuzzing are kept)."""
import base64
import json
import os
import struct

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, utils

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

# the fuzz-only key of fuzz_jwt.c (protects nothing)
KEY_PEM = b"""-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgGnxDUDWNZDTb4IZc
BpnSHgSRQ/XRlkDA8Oipig3fJxShRANCAASQ4txA3rJH0BtJcXgbHIq91v8yggGu
4TRmZUiAfZeTS++1D1zxE0odzdN0OxN26170dUEelKLHuUGrsNq2A99T
-----END PRIVATE KEY-----
"""
ISSUER, AUDIENCE, NOW = "https://idp.fuzz.test", "paddock", 1800000000
RUN = "5b0c3f8e-2a4d-4c1e-9f6b-7d8e9a0b1c2d"
TENANT = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def uint_b64u(n):
    return b64u(n.to_bytes((n.bit_length() + 7) // 8, "big"))


# ---------------------------------------------------------------- http_request
def http_request():
    reqs = {
        "connect.txt": "CONNECT api.github.com:443 HTTP/1.1\r\nHost: api.github.com:443\r\nUser-Agent: curl/7.88.1\r\n"
        "Proxy-Connection: Keep-Alive\r\n\r\n",
        "connect-v6.txt": "CONNECT [2001:db8::1]:8443 HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n\r\n",
        "get-absolute.txt": "GET http://pypi.org/simple/requests/?x=1 HTTP/1.1\r\nHost: pypi.org\r\nAccept: */*\r\n"
        "Accept-Encoding: gzip\r\nConnection: keep-alive\r\n\r\n",
        "get-port-http10.txt": "GET http://10.0.0.7:8080 HTTP/1.0\r\n\r\n",
        "post-length.txt": "POST http://example.com/upload HTTP/1.1\r\nHost: example.com\r\nContent-Type: application/json\r\n"
        "Content-Length: 13\r\n\r\n{\"hello\": 1}\n",
        "post-chunked.txt": "POST http://example.com/c HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\nGET http://smuggled/ HTTP/1.1\r\n\r\n",
        "put-chunked-upper.txt": "PUT http://example.com/p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        "1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n",
        "bad-cl-te.txt": "POST http://example.com/ HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "bad-bare-lf.txt": "GET http://example.com/ HTTP/1.1\nHost: example.com\n\n",
        "bad-fold.txt": "GET http://example.com/ HTTP/1.1\r\nX-A: 1\r\n  folded\r\n\r\n",
        "origin-form.txt": "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
        "https-absolute.txt": "GET https://example.com/ HTTP/1.1\r\n\r\n",
        "trace.txt": "TRACE http://api.example.com/ HTTP/1.1\r\nAuthorization: x\r\n\r\n",
    }
    for name, r in reqs.items():
        write("http_request", name, r)


# ---------------------------------------------------------------- jwt
def sign_es256(key, header, claims):
    h = b64u(json.dumps(header).encode())
    c = b64u(json.dumps(claims).encode())
    der = key.sign((h + "." + c).encode(), ec.ECDSA(hashes.SHA256()))
    r, s = utils.decode_dss_signature(der)
    return h + "." + c + "." + b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def jwt():
    key = serialization.load_pem_private_key(KEY_PEM, None)
    hdr = {"alg": "ES256", "typ": "JWT", "kid": "fuzz-1"}
    good = {"iss": ISSUER, "aud": [AUDIENCE, "other"], "sub": "user-1", "email": "a@example.com",
            "groups": ["eng", "admins"], "exp": NOW + 600, "iat": NOW - 10, "nbf": NOW - 10}
    write("jwt", "valid.jwt", sign_es256(key, hdr, good))
    write("jwt", "expired.jwt", sign_es256(key, hdr, dict(good, exp=NOW - 3600)))
    write("jwt", "wrong-aud.jwt", sign_es256(key, hdr, dict(good, aud="someone-else")))
    write("jwt", "no-kid.jwt", sign_es256(key, {"alg": "ES256"}, dict(good, aud=AUDIENCE)))
    write("jwt", "alg-none.jwt", b64u(b'{"alg":"none"}') + "." + b64u(json.dumps(good).encode()) + ".")
    write("jwt", "hs256.jwt", b64u(b'{"alg":"HS256","kid":"fuzz-1"}') + "." + b64u(json.dumps(good).encode()) +
          "." + b64u(b"\x00" * 32))
    write("jwt", "crit.jwt", sign_es256(key, dict(hdr, crit=["exp"]), good))
    write("jwt", "jku.jwt", sign_es256(key, dict(hdr, jku="https://evil.example/jwks"), good))
    # claims mode of fuzz_jwt.c: "<header JSON>\n<claims JSON>", signed by the target
    write("jwt", "claims-valid.txt", json.dumps(hdr) + "\n" + json.dumps(good))
    write("jwt", "claims-nbf.txt", json.dumps(hdr) + "\n" + json.dumps(dict(good, nbf=NOW + 3600)))
    write("jwt", "claims-types.txt", json.dumps(hdr) + "\n" +
          json.dumps(dict(good, exp="soon", iat=1.5, aud=[1, None], iss=None)))
    write("jwt", "claims-dup.txt", json.dumps(hdr) + '\n{"iss": "a", "iss": "b", "exp": 1}')


# ---------------------------------------------------------------- jwks
def jwks():
    ec_key = serialization.load_pem_private_key(KEY_PEM, None).public_key().public_numbers()
    ec_jwk = {"kty": "EC", "crv": "P-256", "kid": "fuzz-1", "use": "sig", "alg": "ES256",
              "x": b64u(ec_key.x.to_bytes(32, "big")), "y": b64u(ec_key.y.to_bytes(32, "big"))}
    rsa_pub = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_numbers()
    rsa_jwk = {"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256", "n": uint_b64u(rsa_pub.n),
               "e": uint_b64u(rsa_pub.e)}
    write("jwks", "ec-and-rsa.json", json.dumps({"keys": [ec_jwk, rsa_jwk]}, indent=1))
    write("jwks", "single-no-kid.json", json.dumps({"keys": [{k: v for k, v in ec_jwk.items() if k != "kid"}]}))
    write("jwks", "skipped-kinds.json", json.dumps({"keys": [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "s"},
        {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "o"},
        dict(rsa_jwk, use="enc", kid="enc"), dict(ec_jwk, key_ops=["encrypt"], kid="ops"),
        dict(ec_jwk, crv="P-384", kid="p384")]}))
    write("jwks", "bad-point.json", json.dumps({"keys": [dict(ec_jwk, y=ec_jwk["x"])]}))
    write("jwks", "small-rsa.json", json.dumps({"keys": [dict(rsa_jwk, n=uint_b64u(rsa_pub.n >> 1100))]}))
    write("jwks", "dup-kid.json", json.dumps({"keys": [ec_jwk, dict(rsa_jwk, kid="fuzz-1")]}))
    write("jwks", "alg-mismatch.json", json.dumps({"keys": [dict(ec_jwk, alg="RS256")]}))
    write("jwks", "empty.json", '{"keys": []}')
    write("jwks", "dup-member.json", '{"keys": [], "keys": []}')


# ---------------------------------------------------------------- envelope
def varint(n):
    out = b""
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def fld(num, v):
    if isinstance(v, bool):
        return varint(num << 3) + varint(int(v))
    if isinstance(v, int):
        return varint(num << 3) + varint(v)
    if isinstance(v, float):
        return varint(num << 3 | 1) + struct.pack("<d", v)
    if isinstance(v, str):
        v = v.encode()
    return varint(num << 3 | 2) + varint(len(v)) + v


def msg(*fields):
    return b"".join(fld(n, v) for n, v in fields if v is not None)


def env(seq, producer, msgid):
    return msg((1, TENANT), (2, RUN), (3, seq), (4, NOW * 1000000 + 123), (5, producer), (6, 1), (7, msgid))


def envelope():
    e1 = env(1, "runner-agent/local-node-1", "9d7c1e2a-0b3f-4a5c-8d6e-1f2a3b4c5d6e")
    ev = lambda seq, kind, data, status=None, terminal=None: msg(
        (1, env(seq, "runner-agent/local-node-1", "9d7c1e2a-0b3f-4a5c-8d6e-1f2a3b4c5d%02x" % seq)), (2, kind),
        (3, "platform"), (4, json.dumps(data)), (5, "7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d"), (6, status),
        (7, terminal))
    write("envelope", "envelope.bin", e1)
    write("envelope", "run-event-status.bin", ev(1, "status", {"status": "running"}, "running"))
    write("envelope", "run-event-batch.bin", msg((1, ev(2, "stdout", {"text": "hello\n"})),
                                                 (1, ev(3, "egress", {"host": "pypi.org", "port": 443})),
                                                 (1, ev(4, "status", {"status": "succeeded"}, "succeeded", True))))
    snap = msg((1, "sb-1"), (2, 3), (3, "demo"), (7, "debian-12"), (8, '{"agent":{"type":"command"}}'))
    req = msg((1, env(0, "api/1", "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")), (2, "team"), (3, "user"), (4, snap))
    write("envelope", "run-requested.bin", req)
    write("envelope", "run-assigned.bin", msg((1, env(0, "scheduler/1", "1a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")),
                                              (2, "local-node-1"), (3, req), (4, 1)))
    write("envelope", "run-control-cancel.bin", msg((1, env(0, "api/1", "2a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")),
                                                    (2, "local-node-1"), (3, msg((1, "user asked")))))
    write("envelope", "node-heartbeat.bin", msg((1, env(0, "runner-agent/local-node-1", "3a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")),
                                                (2, "local-node-1"), (3, msg((1, 4), (2, 2.0), (3, 4096))),
                                                (4, msg((1, 1))), (5, RUN), (6, 5000), (7, "0.1.0"), (8, "debian-12")))
    write("envelope", "audit-record.bin", msg((1, env(0, "api/1", "4a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")),
                                              (2, "user:u1"), (3, "run.launch"), (4, "run"), (5, RUN),
                                              (6, "127.0.0.1"), (7, "success"), (8, "ab" * 32), (9, "{}")))
    write("envelope", "artifact-chunk.bin", msg((1, e1), (2, "diff.patch"), (3, "diff"), (4, 0), (5, 1), (6, 5),
                                                (7, "cd" * 32), (8, b"hello"), (9, "text/x-diff")))
    write("envelope", "usage-record.bin", msg((1, e1), (2, "team"), (3, "user"), (4, 12.5), (5, 100), (6, 20),
                                              (7, 4096), (8, "claude"), (9, 0.01),
                                              (12, msg((1, "anthropic"), (2, "claude"), (3, 2), (4, 100)))))
    write("envelope", "approval-notice.bin", msg((1, e1), (2, "5a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"), (3, RUN),
                                                 (5, "egress"), (6, '{"host":"x"}'), (9, "pending")))
    write("envelope", "bad-length.bin", b"\x0a\xff\xff\xff\xff\x0f" + e1)


# ---------------------------------------------------------------- hook
def frame(obj):
    b = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return struct.pack(">I", len(b)) + b


def hook():
    base = {"session_id": "s1", "cwd": "/workspace", "hook_event_name": "PreToolUse"}
    write("hook", "claude-bash.bin", frame({"cli": "claude-code", "event": "PreToolUse", "input": dict(
        base, tool_name="Bash", tool_use_id="toolu_01", tool_input={"command": "cat .env && git push origin main"})}))
    write("hook", "claude-write.bin", frame({"cli": "claude-code", "event": "PreToolUse", "input": dict(
        base, tool_name="Write", tool_use_id="toolu_02",
        tool_input={"file_path": "/workspace/src/main.c", "content": "int main(void) { return 0; }\n"})}))
    write("hook", "codex-array.bin", frame({"cli": "codex", "event": "PreToolUse", "input": {
        "cwd": "/workspace/sub", "tool_name": "shell", "tool_use_id": "call_1",
        "tool_input": {"cmd": ["bash", "-lc", "rm -rf ../.git; ls 'a b' > out.txt"]}}}))
    write("hook", "mcp.bin", frame({"cli": "claude-code", "event": "PreToolUse", "input": dict(
        base, tool_name="mcp__github__delete_repo", tool_use_id="toolu_03", tool_input={"repo": "x"})}))
    write("hook", "relative-path.bin", frame({"cli": "codex", "event": "PreToolUse", "input": {
        "cwd": "/tmp", "tool_name": "apply_patch", "tool_input": {"path": "../workspace/.env"}}}))
    write("hook", "post.bin", frame({"cli": "claude-code", "event": "PostToolUse", "input": dict(
        base, hook_event_name="PostToolUse", tool_name="Bash", tool_use_id="toolu_01",
        tool_response={"stdout": "ok", "exit_code": 0}, duration_ms=12)}))
    write("hook", "unknown-event.bin", frame({"cli": "codex", "event": "Stop", "input": {}}))
    write("hook", "dup-key.bin", frame(b'{"cli": "codex", "cli": "claude-code", "event": "PreToolUse", "input": {}}'))
    write("hook", "cut.bin", struct.pack(">I", 100) + b'{"cli": "co')
    write("hook", "empty-frame.bin", b"\x00\x00\x00\x00")
    write("hook", "oversized.bin", b"\x00\x10\x00\x01{}")


# ---------------------------------------------------------------- s3_xml
def s3_xml():
    # RGW's shape (rgw_rest.cc dump_errno/end_header): Code, then optional fields
    docs = {
        "nosuchkey.xml": '<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message></Message>'
        '<BucketName>paddock-artifacts</BucketName><RequestId>tx00000a1b2c3d4e5f60718-0067f0a1b2-1004-default'
        '</RequestId><HostId>1004-default-default</HostId></Error>',
        "access-denied.xml": '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
        '<Message>Access Denied</Message><RequestId>tx0000000000000000000a1-0067f0a1b2-1004-default</RequestId>'
        '<HostId>1004-default-default</HostId></Error>',
        "signature.xml": '<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n  <Code>SignatureDoesNotMatch</Code>\n'
        '  <Message>The request signature we calculated does not match the signature you provided.</Message>\n'
        '  <StringToSign>AWS4-HMAC-SHA256\n20261206T000000Z</StringToSign>\n</Error>\n',
        "bucket-exists.xml": '<?xml version="1.0" encoding="UTF-8"?><Error><Code>BucketAlreadyOwnedByYou</Code>'
        '<BucketName>paddock-artifacts</BucketName></Error>',
        "object-lock.xml": '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>forbidden '
        'by object lock</Message></Error>',
        "long-message.xml": "<Error><Code>" + "C" * 100 + "</Code><Message>" + "m" * 400 + "</Message></Error>",
        "unclosed.xml": "<Error><Code>SlowDown</Code><Message>Please reduce",
        "html.xml": "<html><body><h1>502 Bad Gateway</h1></body></html>\n",
    }
    for name, d in docs.items():
        write("s3_xml", name, d)


# ---------------------------------------------------------------- tls_sni
def tls_sni():
    # beside the captured hellos (capture_hellos.py): a hello cut inside its
    # record, a record split in two (fragmented hello), and not TLS at all
    with open(os.path.join(CORPUS, "tls_sni", "openssl-tls13-sni.bin"), "rb") as f:
        hello = f.read()
    write("tls_sni", "cut.bin", hello[:100])
    body = hello[5:]
    half = len(body) // 2
    write("tls_sni", "fragmented.bin", hello[:3] + half.to_bytes(2, "big") + body[:half] +
          hello[:3] + (len(body) - half).to_bytes(2, "big") + body[half:])
    write("tls_sni", "plain-http.bin", "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")


# ---------------------------------------------------------------- spec
def spec():
    ex = os.path.join(HERE, "..", "..", "examples")
    for f in sorted(os.listdir(ex)):
        if f.endswith(".json"):
            with open(os.path.join(ex, f), "rb") as fh:
                write("spec", "example-" + f, fh.read())
    full = {"name": "full", "team": "eng", "spec": {
        "agent": {"type": "command", "command": ["/bin/sh", "-c", "make test"]},
        "files": [{"path": "notes/plan.md", "mode": "0644", "content": "# Plan\n"}],
        "limits": {"timeout_s": 600, "cpus": 1.5, "memory_mb": 2048, "max_tokens": 100000, "max_cost_usd": 5.0},
        "egress": {"allow": ["pypi.org", "*.github.com:443", "10.0.0.0/8", "[2001:db8::1]:8443", "::1"],
                   "unknown": "ask"},
        "secrets": [{"name": "GITHUB_TOKEN", "as": {"env": "GITHUB_TOKEN"}},
                    {"name": "api-key", "as": {"header": {"name": "X-Api-Key", "origin": "https://api.example.com"}}},
                    {"name": "cert", "as": {"file": "/run/secrets/cert.pem"}}],
        "policy": {"rules": [{"match": {"tool": "Bash", "command": "git push*"}, "action": "ask"},
                             {"match": {"path": "**/.env"}, "action": "deny"},
                             {"match": {"host": "*.internal.example"}, "action": "ask"}]},
        "artifacts": {"paths": ["dist/**", "report.txt"]},
        "retention_days": 30}}
    write("spec", "full.json", json.dumps(full, indent=1))
    cli = {"name": "claude", "team": "eng", "spec": {
        "agent": {"type": "claude-code", "model": "claude-sonnet"}, "image": "node-22",
        "models": ["claude-sonnet"], "connectors": ["github"], "skills": ["review"],
        "prompt": {"template": "fix-bug", "vars": {"issue": "42"}},
        "egress": {"profiles": ["python"]}, "policy": {"packs": ["strict"]},
        "identity": [{"audience": "sts.example.com", "as": {"env": "ID_TOKEN"}}]}}
    write("spec", "agent-cli.json", json.dumps(cli, indent=1))
    write("spec", "bad-types.json", json.dumps({"name": "x", "team": "t", "spec": {
        "agent": {"type": "command", "command": "not-an-array"}, "files": [{"path": "../etc/passwd", "mode": "9999"}],
        "limits": {"timeout_s": -1}, "egress": {"allow": ["exa mple.com", "1.2.3.4/33", "[::1"]}}}))
    write("spec", "dup-key.json", '{"name": "x", "name": "y", "spec": {}}')
    write("spec", "deep.json", "[" * 40 + "]" * 40)


for gen in (http_request, jwt, jwks, envelope, hook, s3_xml, tls_sni, spec):
    gen()
