#!/usr/bin/python3
"""Captures real TLS ClientHellos into corpus/tls_sni (tests/fuzz/README.md):
a listener on 127.0.0.1 (an ephemeral port; nothing leaves loopback) keeps
the first bytes each client sends and closes, so the handshake goes no
further. Clients: openssl s_client (TLS 1.3 and 1.2, with and without SNI,
with ALPN), curl, and Python's ssl."""
import os
import socket
import ssl
import subprocess
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "tls_sni")


def capture(name, client):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    got = []

    def serve():
        c, _ = srv.accept()
        c.settimeout(3)
        data = b""
        try:
            while len(data) < 5 or len(data) < 5 + int.from_bytes(data[3:5], "big"):
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            pass
        got.append(data)
        c.close()

    t = threading.Thread(target=serve)
    t.start()
    client(port)
    t.join(5)
    srv.close()
    if got and got[0]:
        os.makedirs(OUT, exist_ok=True)
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(got[0])
        print("%s: %d bytes" % (name, len(got[0])))


def run(*argv):
    return lambda port: subprocess.run([a.replace("PORT", str(port)) for a in argv], stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)


def py_client(sni):
    def go(port):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                ctx.wrap_socket(s, server_hostname=sni)
        except (OSError, ssl.SSLError):
            pass
    return go


capture("openssl-tls13-sni.bin", run("openssl", "s_client", "-connect", "127.0.0.1:PORT", "-servername", "api.github.com"))
capture("openssl-tls12-sni-alpn.bin", run("openssl", "s_client", "-connect", "127.0.0.1:PORT", "-tls1_2",
                                          "-servername", "pypi.org", "-alpn", "h2,http/1.1"))
capture("openssl-no-sni.bin", run("openssl", "s_client", "-connect", "127.0.0.1:PORT", "-noservername"))
capture("curl-sni.bin", run("curl", "-sk", "--max-time", "5", "--connect-to", "example.com:443:127.0.0.1:PORT",
                            "https://example.com/"))
capture("python-sni-trailing-dot.bin", py_client("Files.Example.COM."))
