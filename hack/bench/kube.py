"""A minimal Kubernetes API client for the benchmark (standard library only).

It reads the kubeconfig that hack/local-cluster.sh writes (server, CA file,
client certificate and key files), keeps one HTTPS connection per thread,
and offers what the benchmark needs: requests, server-side apply, list,
watch (list + watch from the list's resourceVersion, reconnecting), and the
Prometheus text format of /metrics.
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
import threading
import time
import urllib.parse
from typing import Callable, Iterable


class ApiError(Exception):
    def __init__(self, status: int, body: str, what: str):
        super().__init__(f"{what}: HTTP {status}: {body[:500]}")
        self.status = status


def _kubeconfig_field(text: str, key: str) -> str:
    m = re.search(rf"^\s*{re.escape(key)}:\s*(\S+)\s*$", text, re.M)
    if not m:
        raise SystemExit(f"kubeconfig has no '{key}' (expected the file hack/local-cluster.sh writes)")
    return m.group(1)


class Kube:
    def __init__(self, kubeconfig: str):
        text = open(kubeconfig, encoding="utf-8").read()
        server = urllib.parse.urlparse(_kubeconfig_field(text, "server"))
        self.host, self.port = server.hostname, server.port or 443
        self.ctx = ssl.create_default_context(cafile=_kubeconfig_field(text, "certificate-authority"))
        self.ctx.load_cert_chain(_kubeconfig_field(text, "client-certificate"),
                                 _kubeconfig_field(text, "client-key"))
        self.local = threading.local()

    # ------------------------------------------------------------ basics --

    def _conn(self, fresh: bool = False, timeout: float | None = 60) -> http.client.HTTPSConnection:
        if fresh:
            return http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)
            self.local.conn = conn
        return conn

    def request(self, method: str, path: str, body=None, content_type: str = "application/json",
                query: dict | None = None, ok: Iterable[int] = (200, 201, 202)):
        """One request; returns (status, decoded JSON or text). Raises ApiError
        for a status outside `ok`. Retries once on a dropped keep-alive
        connection."""
        if query:
            path = f"{path}?{urllib.parse.urlencode(query)}"
        data = None
        headers = {"Accept": "application/json"}
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            headers["Content-Type"] = content_type
        deadline = time.monotonic() + 60
        while True:
            for attempt in (0, 1):
                conn = self._conn()
                try:
                    conn.request(method, path, body=data, headers=headers)
                    resp = conn.getresponse()
                    raw = resp.read()
                    break
                except (http.client.HTTPException, ConnectionError, OSError):
                    conn.close()
                    self.local.conn = None
                    if attempt:
                        raise
            # 429 (a CRD's storage initialising, priority and fairness) and
            # 503: wait as told, for at most a minute.
            if resp.status in (429, 503) and time.monotonic() < deadline:
                time.sleep(min(5.0, float(resp.getheader("Retry-After") or 1)))
                continue
            break
        text = raw.decode("utf-8", "replace")
        if resp.status not in ok:
            raise ApiError(resp.status, text, f"{method} {path}")
        ctype = resp.getheader("Content-Type", "")
        return resp.status, (json.loads(text) if "json" in ctype and text else text)

    def get(self, path: str, query: dict | None = None, ok=(200,)):
        return self.request("GET", path, query=query, ok=ok)[1]

    def apply(self, path: str, obj: dict, manager: str, force: bool = True):
        """Server-side apply of `obj` at `path` (the object's own URL)."""
        query = {"fieldManager": manager}
        if force:
            query["force"] = "true"
        return self.request("PATCH", path, body=obj, content_type="application/apply-patch+yaml",
                            query=query)[1]

    def merge_patch(self, path: str, patch: dict, manager: str):
        return self.request("PATCH", path, body=patch, content_type="application/merge-patch+json",
                            query={"fieldManager": manager})[1]

    def delete(self, path: str, query: dict | None = None):
        return self.request("DELETE", path, query=query, ok=(200, 202, 404))[1]

    def list(self, path: str, query: dict | None = None) -> tuple[list, str]:
        """All items (paginated), and the list's resourceVersion."""
        items, cont = [], None
        while True:
            q = dict(query or {}, limit="500")
            if cont:
                q["continue"] = cont
            out = self.get(path, q)
            items.extend(out.get("items", []))
            cont = out["metadata"].get("continue")
            if not cont:
                return items, out["metadata"]["resourceVersion"]

    # ------------------------------------------------------------- watch --

    def watch(self, path: str, on_event: Callable[[str, dict, float], None],
              stop: threading.Event, query: dict | None = None,
              on_synced: Callable[[], None] | None = None) -> None:
        """List, then watch from the list's resourceVersion until `stop` is
        set; `on_event(type, object, monotonic receipt time)` sees the listed
        objects as ADDED. Reconnects where it left off; re-lists on 410 Gone
        (then objects that vanished meanwhile are reported as DELETED)."""
        known: dict[str, dict] = {}
        rv = None
        synced = False

        def key(o):
            m = o["metadata"]
            return f"{m.get('namespace', '')}/{m['name']}"

        while not stop.is_set():
            if rv is None:
                items, rv = self.list(path, query)
                now = time.monotonic()
                fresh = {key(o): o for o in items}
                for k, o in known.items():
                    if k not in fresh:
                        on_event("DELETED", o, now)
                for o in items:
                    on_event("ADDED", o, now)
                known = fresh
                if not synced:
                    synced = True
                    if on_synced:
                        on_synced()
            q = dict(query or {}, watch="1", resourceVersion=rv, allowWatchBookmarks="true",
                     timeoutSeconds="600")
            # Blocking reads: the server ends the watch after timeoutSeconds
            # (and sends bookmarks meanwhile), so `stop` is looked at often
            # enough; the threads are daemons and die with the benchmark.
            conn = self._conn(fresh=True, timeout=None)
            try:
                conn.request("GET", f"{path}?{urllib.parse.urlencode(q)}",
                             headers={"Accept": "application/json"})
                resp = conn.getresponse()
                if resp.status == 410:
                    rv = None
                    continue
                if resp.status != 200:
                    raise ApiError(resp.status, resp.read().decode(), f"watch {path}")
                while not stop.is_set():
                    line = resp.readline()
                    if not line:
                        break
                    now = time.monotonic()
                    ev = json.loads(line)
                    typ, obj = ev["type"], ev["object"]
                    if typ == "ERROR":
                        if obj.get("code") == 410:
                            rv = None
                        break
                    rv = obj["metadata"]["resourceVersion"]
                    if typ == "BOOKMARK":
                        continue
                    if typ == "DELETED":
                        known.pop(key(obj), None)
                    else:
                        known[key(obj)] = obj
                    on_event(typ, obj, now)
            except (http.client.HTTPException, ConnectionError, OSError):
                if stop.is_set():
                    break
                time.sleep(0.5)
            finally:
                conn.close()


def start_watch(kube: Kube, path: str, on_event, stop: threading.Event,
                query: dict | None = None, timeout: float = 120) -> threading.Thread:
    """Starts `kube.watch` in a daemon thread; returns once its first list is
    delivered."""
    synced = threading.Event()
    errors: list[BaseException] = []

    def run():
        try:
            kube.watch(path, on_event, stop, query, on_synced=synced.set)
        except BaseException as e:  # noqa: BLE001 - reported to the caller below
            errors.append(e)
            synced.set()
            raise

    t = threading.Thread(target=run, daemon=True, name=f"watch {path}")
    t.start()
    if not synced.wait(timeout):
        raise SystemExit(f"watch {path}: no initial list within {timeout}s")
    if errors:
        raise SystemExit(f"watch {path} failed: {errors[0]}")
    return t


# ------------------------------------------------------- Prometheus text --

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str, names: Iterable[str] | None = None) -> list[tuple[str, dict, float]]:
    """Samples of the Prometheus text format: (name, labels, value)."""
    wanted = set(names) if names else None
    out = []
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        name = m.group(1)
        if wanted is not None and name not in wanted:
            continue
        labels = dict(_LABEL.findall(m.group(2) or ""))
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        out.append((name, labels, value))
    return out
