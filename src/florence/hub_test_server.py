#!/usr/bin/env python3
"""A Hugging Face Hub look-alike on 127.0.0.1 for hub_test.cc (standard library only).

Serves <root>/<org>/<name>/<files> as model repos at one fixed commit per repo, the way the hub's
endpoints answer huggingface_hub:
  GET  /api/models/<org>/<name>/revision/<rev>       {"id", "sha", "siblings": [{"rfilename"}]}
  HEAD|GET /<org>/<name>/resolve/<rev>/<file>        small files: 200, ETag = git blob sha1;
                                                     LFS files (*.safetensors, *.bin): 302 to
                                                     http://localhost:<port>/lfs/<sha256> (another
                                                     host, as the CDN) with X-Linked-Etag/-Size
  GET  /lfs/<sha256>                                  the bytes, honouring Range (206)
Every answer carries X-Repo-Commit; errors carry X-Error-Code as the hub does.
Faults for tests: --cut FILE:BYTES drops the connection after BYTES bytes on the first GET of FILE;
--corrupt FILE serves FILE with one byte flipped; --private ORG/NAME with --token T answers 401
without "Authorization: Bearer T". Each request is appended to --log as one line.
Prints the port on stdout once listening.
"""

import argparse
import hashlib
import http.server
import json
import os
import re
import sys
import threading

LFS_SUFFIXES = (".safetensors", ".bin")


class Hub:
    def __init__(self, args):
        self.root = args.root
        self.log_path = args.log
        self.cut = {}
        for spec in args.cut or []:
            name, n = spec.rsplit(":", 1)
            self.cut[name] = int(n)
        self.corrupt = set(args.corrupt or [])
        self.private = set(args.private or [])
        self.token = args.token
        self.lock = threading.Lock()
        self.by_sha = {}

    def log(self, line):
        if self.log_path:
            with self.lock, open(self.log_path, "a") as f:
                f.write(line + "\n")

    def repo_dir(self, repo):
        d = os.path.join(self.root, repo)
        return d if os.path.isdir(d) else None

    @staticmethod
    def commit(repo):
        return hashlib.sha1(("commit:" + repo).encode()).hexdigest()

    def files(self, repo):
        d = self.repo_dir(repo)
        out = []
        for base, _, names in os.walk(d, followlinks=True):
            for n in names:
                out.append(os.path.relpath(os.path.join(base, n), d))
        return sorted(out)

    def content(self, repo, name):
        with open(os.path.join(self.repo_dir(repo), name), "rb") as f:
            data = f.read()
        return data


def make_handler(hub):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def record(self):
            auth = self.headers.get("Authorization")
            hub.log(f"{self.command} {self.path} range={self.headers.get('Range', '-')} "
                    f"auth={'ok' if auth == f'Bearer {hub.token}' else ('bad' if auth else 'none')}")

        def send(self, status, headers=None, body=b"", head=False):
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def error(self, status, code, head=False, extra=None):
            h = {"X-Error-Code": code, "X-Error-Message": code}
            h.update(extra or {})
            self.send(status, h, json.dumps({"error": code}).encode(), head)

        def authorized(self, repo):
            if repo not in hub.private:
                return True
            return self.headers.get("Authorization") == f"Bearer {hub.token}"

        def do_HEAD(self):
            self.route(head=True)

        def do_GET(self):
            self.route(head=False)

        def route(self, head):
            self.record()
            path = self.path.split("?")[0]
            m = re.match(r"^/api/models/([^/]+/[^/]+)/revision/([^/]+)$", path)
            if m:
                return self.api(m.group(1), m.group(2))
            m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
            if m:
                return self.resolve(m.group(1), m.group(2), m.group(3), head)
            m = re.match(r"^/lfs/([0-9a-f]{64})$", path)
            if m:
                return self.lfs(m.group(1), head)
            self.error(404, "NotFound", head)

        def api(self, repo, rev):
            if not hub.repo_dir(repo):
                return self.error(404, "RepoNotFound")
            if not self.authorized(repo):
                return self.error(401, "RepoNotFound")
            if rev not in ("main", hub.commit(repo)):
                return self.error(404, "RevisionNotFound")
            body = json.dumps({"id": repo, "sha": hub.commit(repo),
                               "siblings": [{"rfilename": f} for f in hub.files(repo)]}).encode()
            self.send(200, {"Content-Type": "application/json"}, body)

        def resolve(self, repo, rev, name, head):
            if not hub.repo_dir(repo):
                return self.error(404, "RepoNotFound", head)
            if not self.authorized(repo):
                return self.error(401, "RepoNotFound", head)
            commit = hub.commit(repo)
            if rev not in ("main", commit):
                return self.error(404, "RevisionNotFound", head)
            if name not in hub.files(repo):
                return self.error(404, "EntryNotFound", head, {"X-Repo-Commit": commit})
            data = hub.content(repo, name)
            if name.endswith(LFS_SUFFIXES):
                sha = hashlib.sha256(data).hexdigest()
                hub.by_sha[sha] = (repo, name)
                # Another host, like the hub's CDN links: clients stop there for metadata and
                # must not send the token on ("localhost" reaches this server too).
                port = self.server.server_address[1]
                location = f"http://localhost:{port}/lfs/{sha}"
                self.send(302, {"Location": location, "X-Repo-Commit": commit,
                                "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data)),
                                "ETag": '"redirect"'}, b"", head)
                return
            git = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            self.send(200, {"X-Repo-Commit": commit, "ETag": f'"{git}"'}, data, head)

        def lfs(self, sha, head):
            if sha not in hub.by_sha:
                return self.error(404, "NotFound", head)
            repo, name = hub.by_sha[sha]
            data = hub.content(repo, name)
            if name in hub.corrupt:
                data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
            start = 0
            rng = self.headers.get("Range")
            if rng:
                m = re.match(r"bytes=(\d+)-$", rng)
                start = int(m.group(1))
                if start >= len(data):
                    return self.send(416, {"Content-Range": f"bytes */{len(data)}"}, b"", head)
            body = data[start:]
            self.send_response(206 if rng else 200)
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if head:
                return
            with hub.lock:
                cut = hub.cut.pop(name, None)
            if cut is not None:
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(body)

    return Handler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--log")
    ap.add_argument("--cut", action="append")
    ap.add_argument("--corrupt", action="append")
    ap.add_argument("--private", action="append")
    ap.add_argument("--token", default="")
    args = ap.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(Hub(args)))
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
