"""A small JSON-over-HTTP client for ``hpclaunch serve`` (standard library only).

General on purpose: the CLI and ``Queue`` use it for the people's routes, and the
worker's HTTP session can share it. It verifies TLS (a CA bundle can be given),
honours ``HTTPS_PROXY``/``NO_PROXY`` (urllib's environment proxies), refuses
plain ``http://`` to a host that is not this machine unless told otherwise, and
never puts the token in an error message.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import ssl
import stat
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from hpclaunch.errors import DatabaseError, NotFound, UserError
from hpclaunch.validate import API_PAGE_MAX

TOKEN_ENV = "HPCLAUNCH_TOKEN"
TOKEN_FILE_ENV = "HPCLAUNCH_TOKEN_FILE"
SERVER_ENV = "HPCLAUNCH_SERVER"
CA_BUNDLE_ENV = "HPCLAUNCH_CA_BUNDLE"
TIMEOUT = 120.0


class ServerUnavailable(DatabaseError):
    """The server did not answer, or answered that the queue is unavailable (exit 4)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, insecure_http: bool = False) -> str:
    """The server's base URL without a trailing slash; plain http only to loopback."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"--server {url!r}: expected http(s)://HOST[:PORT]")
    if parts.username or parts.password:
        raise UserError("--server: put the token in HPCLAUNCH_TOKEN(_FILE), not in the URL")
    if parts.scheme == "http" and not is_loopback(parts.hostname) and not insecure_http:
        raise UserError(
            f"--server {url}: plain http to {parts.hostname} would send the token in clear; "
            "use https, or --insecure-http if the network is trusted"
        )
    return url.rstrip("/")


def read_token(environ: dict[str, str] | None = None) -> str:
    """The token from ``HPCLAUNCH_TOKEN``, else a 0600 file named by ``HPCLAUNCH_TOKEN_FILE``."""
    env = os.environ if environ is None else environ
    token = env.get(TOKEN_ENV, "").strip()
    if token:
        return token
    path = env.get(TOKEN_FILE_ENV)
    if not path:
        raise UserError(f"--server needs a token: set {TOKEN_ENV} or {TOKEN_FILE_ENV}")
    try:
        mode = Path(path).stat().st_mode
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UserError(f"{TOKEN_FILE_ENV}: cannot read {path} ({exc.strerror})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UserError(f"{path}: a token file must be private (chmod 600 {path})")
    if not text:
        raise UserError(f"{path}: the token file is empty")
    return text


class ApiClient:
    """JSON requests to one server with one token."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        ca_bundle: str | None = None,
        insecure_http: bool = False,
        timeout: float = TIMEOUT,
    ):
        self.base = check_url(base_url, insecure_http=insecure_http)
        self._token = token
        self.timeout = timeout
        context = None
        if self.base.startswith("https:"):
            if ca_bundle is not None and not Path(ca_bundle).is_file():
                raise UserError(f"--ca-bundle {ca_bundle}: no such file")
            context = ssl.create_default_context(cafile=ca_bundle)
        self._opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))

    def __repr__(self) -> str:  # never the token
        return f"<ApiClient {self.base}>"

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        data: bytes | None = None,
    ) -> Any:
        """The reply's JSON; an error reply raises NotFound (404) or UserError (its sentence)."""
        url = self.base + path
        pairs = {k: v for k, v in (query or {}).items() if v is not None}
        if pairs:
            url += "?" + urllib.parse.urlencode(pairs)
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with self._opener.open(request, timeout=self.timeout) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            raise _error(exc.code, exc.read(), self.base) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            message = f"cannot reach the hpclaunch server at {self.base} ({reason})"
            if method != "GET" and not _never_sent(reason):
                # The request may have been carried out before the reply was lost.
                message += (
                    "; the server may have carried the request out before its reply was "
                    "lost: look (hpclaunch --server URL tasks / batches) before sending it again"
                )
            raise ServerUnavailable(message) from None

    def pages(self, path: str, query: dict[str, Any], limit: int | None = None) -> list[Any]:
        """Every item of a listing (or the first ``limit``), following its cursors."""
        items: list[Any] = []
        cursor = None
        while True:
            size = API_PAGE_MAX if limit is None else min(API_PAGE_MAX, limit - len(items))
            page = self.request("GET", path, query={**query, "limit": size, "cursor": cursor})
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None or (limit is not None and len(items) >= limit):
                return items


def _never_sent(reason: object) -> bool:
    """Whether a failure came before the server could read the request (nothing done)."""
    return isinstance(
        reason, ConnectionRefusedError | socket.gaierror | ssl.SSLCertVerificationError
    )


def _error(status: int, raw: bytes, base: str) -> UserError:
    try:
        message = str(json.loads(raw)["error"])
    except (ValueError, KeyError, TypeError):
        message = f"HTTP {status}"
    if status == 401:
        return UserError(f"the server at {base} refused the token ({message})")
    if status == 404:
        return NotFound(message)
    if status in (502, 503, 504):
        return ServerUnavailable(f"{base}: {message}")
    return UserError(message)
