"""A local stand-in for the Hugging Face Hub endpoints that huggingface_hub's HfApi calls to publish a model.

The real client runs against it: whoami, model info, repo creation, README metadata validation, preupload (which
answers "lfs" for binary files, as the Hub does), the LFS batch API with its PUT and verify, the NDJSON commit and
repo deletion. It has no Xet endpoints: a client with hf-xet enabled fails its upload here as against a Hub whose Xet
storage it cannot reach.
It checks tokens and write permissions like the Hub, keeps each repo's files and commits, and records every request,
so tests assert what was uploaded and what was never asked.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


@dataclass
class Repo:
    owner: str
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[dict] = field(default_factory=list)  # {"oid", "summary", "files": [paths]}

    @property
    def sha(self) -> str | None:
        return self.commits[-1]["oid"] if self.commits else None


class FakeHub:
    def __init__(self) -> None:
        self.accounts: dict[str, dict] = {}  # token -> whoami body
        self.repos: dict[str, Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}  # sha256 -> content
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self.create_payloads: list[dict] = []
        self.deleted: list[str] = []  # repo ids, in the order they were deleted
        self._lock = threading.Lock()
        hub = self

        class Handler(_Handler):
            state = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> "FakeHub":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- set-up helpers for tests ------------------------------------------------------------------------------------
    def add_account(self, token: str, name: str, orgs: dict[str, str] | None = None, role: str = "write",
                    scoped: list[dict] | None = None) -> None:
        """A user whose token has `role` (read, write, fineGrained with `scoped` permissions); `orgs` maps each of
        the user's organisations to the user's role in it."""
        access = {"displayName": "test token", "role": role}
        if role == "fineGrained":
            access["fineGrained"] = {"global": [], "scoped": scoped or []}
        self.accounts[token] = {
            "type": "user",
            "name": name,
            "orgs": [{"type": "org", "name": org, "roleInOrg": org_role} for org, org_role in (orgs or {}).items()],
            "auth": {"type": "access_token", "accessToken": access},
        }

    def add_repo(self, repo_id: str, private: bool = True, files: dict[str, bytes] | None = None) -> Repo:
        repo = Repo(owner=repo_id.split("/")[0], private=private)
        self.repos[repo_id] = repo
        if files:
            self._commit(repo, "initial commit", dict(files))
        return repo

    def paths(self) -> list[str]:
        return [path for _, path in self.requests]

    # -- Hub behaviour -----------------------------------------------------------------------------------------------
    def can_write(self, account: dict, repo_id: str) -> bool:
        owner = repo_id.split("/")[0]
        access = account["auth"]["accessToken"]
        if access["role"] == "read":
            return False
        if access["role"] == "fineGrained":
            return any(
                scope["entity"]["name"] in (owner, repo_id) and "repo.write" in scope["permissions"]
                for scope in access["fineGrained"]["scoped"]
            )
        org_roles = {org["name"]: org["roleInOrg"] for org in account["orgs"]}
        return owner == account["name"] or org_roles.get(owner) in ("write", "admin", "contributor")

    def can_read(self, account: dict | None, repo: Repo) -> bool:
        if not repo.private:
            return True
        return account is not None and repo.owner in {account["name"], *(org["name"] for org in account["orgs"])}

    def _commit(self, repo: Repo, summary: str, files: dict[str, bytes]) -> str:
        oid = hashlib.sha1(f"{len(repo.commits)}:{summary}:{sorted(files)}".encode()).hexdigest()
        repo.files.update(files)
        repo.commits.append({"oid": oid, "summary": summary, "files": sorted(files)})
        return oid


def _is_binary(sample: bytes, path: str) -> bool:
    if path.endswith((".safetensors", ".bin", ".png")) or b"\0" in sample:
        return True
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


class _Handler(BaseHTTPRequestHandler):
    state: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet test output
        pass

    # -- plumbing ----------------------------------------------------------------------------------------------------
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                chunk = self.rfile.read(size)
                self.rfile.readline()
                if size == 0:
                    return b"".join(chunks)
                chunks.append(chunk)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: dict | None = None, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body if body is not None else {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _error(self, status: int, message: str, code: str | None = None) -> None:
        headers = {"X-Error-Message": message, **({"X-Error-Code": code} if code else {})}
        self._send(status, {"error": message}, headers)

    def _account(self) -> dict | None:
        auth = self.headers.get("Authorization", "")
        return self.state.accounts.get(auth.removeprefix("Bearer ").strip()) if auth.startswith("Bearer ") else None

    def _route(self, method: str) -> None:
        path = self.path.split("?")[0]
        body = self._body()
        with self.state._lock:
            self.state.requests.append((method, path))
        account = self._account()
        if self.headers.get("Authorization") and account is None:
            return self._error(401, INVALID_CREDENTIALS)
        for pattern, handler in ROUTES[method]:
            match = re.fullmatch(pattern, path)
            if match:
                with self.state._lock:
                    return handler(self, account, body, **match.groupdict())
        return self._error(404, f"fake hub: no route for {method} {path}")

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    # -- endpoints ---------------------------------------------------------------------------------------------------
    def whoami(self, account, body) -> None:
        if account is None:
            return self._error(401, INVALID_CREDENTIALS)
        self._send(200, account)

    def model_info(self, account, body, repo_id, revision=None) -> None:
        repo = self.state.repos.get(repo_id)
        if repo is None or not self.state.can_read(account, repo):
            return self._error(404, "Repository not found", "RepoNotFound")
        self._send(200, {
            "id": repo_id, "author": repo.owner, "private": repo.private, "sha": repo.sha,
            "siblings": [{"rfilename": name} for name in sorted(repo.files)],
        })

    def create_repo(self, account, body) -> None:
        if account is None:
            return self._error(401, INVALID_CREDENTIALS)
        payload = json.loads(body)
        self.state.create_payloads.append(payload)
        repo_id = f"{payload.get('organization') or account['name']}/{payload['name']}"
        if repo_id in self.state.repos:
            return self._send(409, {"error": "You already created this model repo", "url": f"{self.state.url}/{repo_id}"})
        if not self.state.can_write(account, repo_id):
            return self._error(403, f"You don't have the rights to create a model under the namespace {repo_id.split('/')[0]}")
        self.state.add_repo(repo_id, private=payload.get("visibility") == "private")
        self._send(200, {"url": f"{self.state.url}/{repo_id}", "name": repo_id, "id": repo_id})

    def delete_repo(self, account, body) -> None:
        payload = json.loads(body)
        repo_id = f"{payload.get('organization') or (account or {}).get('name')}/{payload['name']}"
        if self._writable(account, repo_id) is None:
            return
        del self.state.repos[repo_id]
        self.state.deleted.append(repo_id)
        self._send(200)

    def validate_yaml(self, account, body) -> None:
        self._send(200, {"errors": [], "warnings": []})

    def _writable(self, account, repo_id) -> Repo | None:
        repo = self.state.repos.get(repo_id)
        if account is None:
            self._error(401, INVALID_CREDENTIALS)
        elif repo is None or not self.state.can_read(account, repo):
            self._error(404, "Repository not found", "RepoNotFound")
        elif not self.state.can_write(account, repo_id):
            self._error(403, f"You don't have the rights to write to {repo_id}")
        else:
            return repo
        return None

    def preupload(self, account, body, repo_id, revision) -> None:
        if self._writable(account, repo_id) is None:
            return
        files = [
            {
                "path": item["path"],
                "uploadMode": "lfs" if _is_binary(base64.b64decode(item["sample"]), item["path"]) else "regular",
                "shouldIgnore": False,
                "oid": None,
            }
            for item in json.loads(body)["files"]
        ]
        self._send(200, {"files": files, "commitOid": self.state.repos[repo_id].sha})

    def lfs_batch(self, account, body, repo_id) -> None:
        if self._writable(account, repo_id) is None:
            return
        objects = []
        for item in json.loads(body)["objects"]:
            entry = {"oid": item["oid"], "size": item["size"], "authenticated": True}
            if item["oid"] not in self.state.lfs_objects:
                entry["actions"] = {
                    "upload": {"href": f"{self.state.url}/lfs-upload/{item['oid']}"},
                    "verify": {"href": f"{self.state.url}/lfs-verify"},
                }
            objects.append(entry)
        self._send(200, {"transfer": "basic", "objects": objects})

    def lfs_upload(self, account, body, oid) -> None:
        if hashlib.sha256(body).hexdigest() != oid:
            return self._error(400, "the uploaded content does not match its sha256")
        self.state.lfs_objects[oid] = body
        self._send(200)

    def lfs_verify(self, account, body) -> None:
        item = json.loads(body)
        stored = self.state.lfs_objects.get(item["oid"])
        if stored is None or len(stored) != item["size"]:
            return self._error(422, "object not uploaded")
        self._send(200, {"success": True})

    def commit(self, account, body, repo_id, revision) -> None:
        repo = self._writable(account, repo_id)
        if repo is None:
            return
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        summary = lines[0]["value"]["summary"]
        files = {}
        for line in lines[1:]:
            value = line["value"]
            if line["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "lfsFile":
                if value["oid"] not in self.state.lfs_objects:
                    return self._error(422, f"LFS object {value['oid']} of {value['path']} was never uploaded")
                files[value["path"]] = self.state.lfs_objects[value["oid"]]
            else:
                return self._error(400, f"fake hub: unsupported commit operation {line['key']}")
        oid = self.state._commit(repo, summary, files)
        self._send(200, {"commitUrl": f"{self.state.url}/{repo_id}/commit/{oid}", "commitOid": oid,
                         "pullRequestUrl": None, "success": True})


_REPO = r"(?P<repo_id>[\w.-]+/[\w.-]+)"
ROUTES = {
    "GET": [
        (r"/api/whoami-v2", _Handler.whoami),
        (rf"/api/models/{_REPO}(?:/revision/(?P<revision>[^/]+))?", _Handler.model_info),
    ],
    "POST": [
        (r"/api/repos/create", _Handler.create_repo),
        (r"/api/validate-yaml", _Handler.validate_yaml),
        (rf"/api/models/{_REPO}/preupload/(?P<revision>[^/]+)", _Handler.preupload),
        (rf"/{_REPO}\.git/info/lfs/objects/batch", _Handler.lfs_batch),
        (r"/lfs-verify", _Handler.lfs_verify),
        (rf"/api/models/{_REPO}/commit/(?P<revision>[^/]+)", _Handler.commit),
    ],
    "PUT": [(r"/lfs-upload/(?P<oid>[0-9a-f]{64})", _Handler.lfs_upload)],
    "DELETE": [(r"/api/repos/delete", _Handler.delete_repo)],
}
