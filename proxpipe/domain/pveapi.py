"""A small Proxmox VE API client on the standard library, for API tokens, shaped like proxmoxer's
(`api.nodes("pve1").qemu(201).status.start.post()`).

proxmoxer (with requests) costs a tenth of a second to import. The pipeline's up-to-date checks read one
list through this client, so a run where nothing changed never pays that; the lab's `pipeline-lab`, which
Terraform starts once per VM, uses it for everything. Calls that change things in the pipeline itself go
through proxmoxer.
"""

from __future__ import annotations

import http.client
import json
import ssl
from typing import Any
from urllib.parse import urlencode, urlsplit


class HTTPStatus(Exception):
    """An answer other than 2xx; the reason is PVE's message."""

    def __init__(self, code: int, reason: str, body: str = ""):
        super().__init__(f"{code} {reason}")
        self.code, self.reason, self.body = code, reason, body


class Client:
    def __init__(self, url: str, token: str | None, ca_file: str | None, verify: bool, timeout: float):
        parts = urlsplit(url)
        self.host, self.port, self.prefix = parts.hostname, parts.port or 8006, parts.path.rstrip("/")
        self.headers = {"Authorization": f"PVEAPIToken={token}"} if token else {}
        self.timeout = timeout
        if verify:
            self.context = ssl.create_default_context(cafile=ca_file)
        else:
            self.context = ssl._create_unverified_context()  # noqa: S323 - verify_tls: false asks for exactly this

    def request(self, method: str, path: str, params: dict[str, Any] | None = None) -> Any:
        query = urlencode({k: v for k, v in (params or {}).items() if v is not None})
        body, headers = None, dict(self.headers)
        url = f"{self.prefix}/api2/json{path}"
        if method in ("POST", "PUT"):
            body = query.encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif query:
            url += f"?{query}"
        return self.send(method, url, body, headers)

    def send(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> Any:
        """One HTTPS request to this server; the answer's "data"; HTTPStatus for an answer other than 2xx."""
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.context)
        try:
            conn.request(method, url, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
        finally:
            conn.close()
        if not 200 <= answer.status < 300:
            raise HTTPStatus(answer.status, answer.reason, data.decode(errors="replace").strip())
        return json.loads(data or b"{}").get("data")

    def __getattr__(self, name: str) -> Resource:
        return Resource(self, f"/{name}")


class Resource:
    def __init__(self, client: Client, path: str):
        self._client, self._path = client, path

    def __getattr__(self, name: str) -> Resource:
        if name.startswith("_"):
            raise AttributeError(name)
        return Resource(self._client, f"{self._path}/{name}")

    def __call__(self, part: Any) -> Resource:
        return Resource(self._client, f"{self._path}/{part}")

    def get(self, **params: Any) -> Any:
        return self._client.request("GET", self._path, params)

    def post(self, **data: Any) -> Any:
        return self._client.request("POST", self._path, data)

    def put(self, **data: Any) -> Any:
        return self._client.request("PUT", self._path, data)

    def delete(self, **params: Any) -> Any:
        return self._client.request("DELETE", self._path, params)
