#!/usr/bin/env python3
"""The operator benchmark, driven by hack/bench.sh.

For each N: a fresh local control plane of its own (LOCAL_CLUSTER_DIR, not
the tests' cluster); N namespaces with a service account and 5 Tasks each;
then three runs on the same objects, one after the other:

  baseline-serial    what `buildpolicy-operator render` prints for the N
                     policies, applied with one `kubectl apply --server-side`
  baseline-parallel  the same objects in P shards (whole policies per shard),
                     P kubectl processes at once
  operator           the operator (release build) running; the N BuildPolicies
                     applied with one `kubectl apply --server-side`

The baselines' objects are removed (SCCs, Roles, RoleBindings deleted, the
Task pins taken off) and the removal is watched to the end before the next
run starts. Progress is measured the same way in every run: watches (one
process, this one) on SCCs, Roles, RoleBindings and Tasks labelled
buildpolicy.dev/policy, and on BuildPolicies. A baseline policy counts when
its four objects exist (its Task carrying the pin); an operator policy counts
when its Ready condition is True. The time of a count is when the watch event
arrived here.

After the operator converged: two resync periods of steady state (API server
write requests, from apiserver_request_total), then 100 out-of-band edits
and how long until the watch sees each reverted, then the operator's peak
RSS and CPU time from /proc.
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from kube import ApiError, Kube, parse_metrics, start_watch  # noqa: E402
import report  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
POLICY_LABEL = "buildpolicy.dev/policy"
REQUIRED_SCC = "openshift.io/required-scc"
CAPABILITIES = ["SETUID", "SETGID", "SYS_ADMIN", "SYS_CHROOT"]
TASKS_PER_NAMESPACE = 5
PINNED_TASK = "task-2"
SERVICE_ACCOUNT = "builder"
SETUP_MANAGER = "bench-setup"
DRIFT_MANAGER = "bench-drift"
WRITE_VERBS = ("POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION")
# (group, resource) the operator writes. Leases are not in the list: the
# benchmark runs the operator without leader election, and the API server
# renews its own identity Lease every 10 s.
OPERATOR_RESOURCES = {
    ("security.openshift.io", "securitycontextconstraints"),
    ("rbac.authorization.k8s.io", "roles"),
    ("rbac.authorization.k8s.io", "rolebindings"),
    ("tekton.dev", "tasks"),
    ("buildpolicy.dev", "buildpolicies"),
    ("events.k8s.io", "events"),
    ("", "events"),
    ("authorization.k8s.io", "subjectaccessreviews"),
}

SCC_PATH = "/apis/security.openshift.io/v1/securitycontextconstraints"
POLICY_PATH = "/apis/buildpolicy.dev/v1alpha1/buildpolicies"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def ns_name(i: int) -> str:
    return f"bench-{i:04d}"


def policy_name(i: int) -> str:
    return f"bp-{i:04d}"


def loadavg() -> list[float]:
    return [float(x) for x in open("/proc/loadavg").read().split()[:3]]


# ------------------------------------------------------------ processes --

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_stats(pid: int) -> dict:
    """CPU seconds (utime + stime) and memory of a live process."""
    out = {}
    try:
        stat = open(f"/proc/{pid}/stat").read()
        fields = stat[stat.rindex(")") + 2:].split()
        out["cpu_seconds"] = (int(fields[11]) + int(fields[12])) / CLK_TCK
        for line in open(f"/proc/{pid}/status"):
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[key.lower() + "_kib"] = int(value.split()[0])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    return out


def run_timed(cmd: list[str], log_path: str, env: dict | None = None) -> dict:
    """Runs a command to its end: wall time and its CPU seconds."""
    t0 = time.monotonic()
    with open(log_path, "ab") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({p.returncode}); see {log_path}")
    return {"wall_seconds": wall, "cpu_seconds": usage.ru_utime + usage.ru_stime}


# -------------------------------------------------------------- cluster --

class Cluster:
    """The benchmark's own control plane (hack/local-cluster.sh with
    LOCAL_CLUSTER_DIR), never the tests' one."""

    def __init__(self, state_dir: str, log_dir: str):
        self.state = state_dir
        self.log_path = os.path.join(log_dir, "local-cluster.log")
        self.env = dict(os.environ, LOCAL_CLUSTER_DIR=state_dir)
        self.kubeconfig = os.path.join(state_dir, "kubeconfig")
        self.bin = os.environ.get("LOCAL_CLUSTER_BIN", os.path.join(ROOT, "target/local-cluster/bin"))
        self.kubectl = os.path.join(self.bin, "kubectl")

    def _script(self, *args: str) -> None:
        with open(self.log_path, "ab") as out:
            subprocess.run([os.path.join(ROOT, "hack/local-cluster.sh"), *args], env=self.env,
                           stdout=out, stderr=subprocess.STDOUT, check=True)

    def up(self) -> float:
        t0 = time.monotonic()
        self._script("down")
        args = ["up"]
        # No pods are created here: OpenShift's SCC admission webhook, where
        # the script has it, would only add a writer (namespace annotations).
        if "--no-scc-admission" in open(os.path.join(ROOT, "hack/local-cluster.sh")).read():
            args.append("--no-scc-admission")
        # Nor Tekton's controller: no PipelineRun runs in the benchmark.
        if "--no-tekton" in open(os.path.join(ROOT, "hack/local-cluster.sh")).read():
            args.append("--no-tekton")
        self._script(*args)
        return time.monotonic() - t0

    def down(self) -> None:
        self._script("down")

    def pids(self) -> dict[str, int]:
        out = {}
        for name in ("etcd", "kube-apiserver", "kube-controller-manager"):
            try:
                out[name] = int(open(os.path.join(self.state, "run", f"{name}.pid")).read())
            except (FileNotFoundError, ValueError):
                pass
        return out

    def cpu(self) -> dict[str, float]:
        return {name: proc_stats(pid).get("cpu_seconds", 0.0) for name, pid in self.pids().items()}

    def server_version(self) -> str:
        try:
            out = subprocess.run([self.kubectl, "--kubeconfig", self.kubeconfig, "version", "-o", "json"],
                                 capture_output=True, text=True, timeout=30).stdout
            return json.loads(out)["serverVersion"]["gitVersion"]
        except Exception:  # noqa: BLE001 - informational only
            return "unknown"


# ------------------------------------------------------------- progress --

class Tracker:
    """Cluster state seen through watches: per policy, which of its four
    rendered objects exist, and whether its Ready condition is True; each
    count over time since `begin`."""

    PARTS = ("scc", "role", "rolebinding", "task")

    def __init__(self, names: list[str]):
        self.names = set(names)
        self.lock = threading.Condition()
        self.parts: dict[str, set] = {n: set() for n in names}
        self.objects_done: set[str] = set()
        self.ready: set[str] = set()
        self.t0: float | None = None
        self.objects_timeline: list[tuple[float, int]] = []
        self.ready_timeline: list[tuple[float, int]] = []
        self.observers: list = []

    def begin(self, t0: float) -> None:
        with self.lock:
            self.t0 = t0
            self.objects_timeline = [(0.0, len(self.objects_done))]
            self.ready_timeline = [(0.0, len(self.ready))]

    def _part(self, policy: str | None, part: str, present: bool, t: float) -> None:
        if policy not in self.names:
            return
        with self.lock:
            parts = self.parts[policy]
            (parts.add if present else parts.discard)(part)
            done = len(parts) == len(self.PARTS)
            if done != (policy in self.objects_done):
                (self.objects_done.add if done else self.objects_done.discard)(policy)
                if self.t0 is not None:
                    self.objects_timeline.append((t - self.t0, len(self.objects_done)))
                self.lock.notify_all()

    def _notify(self, kind: str, typ: str, obj: dict, t: float) -> None:
        for observer in list(self.observers):
            observer(kind, typ, obj, t)

    @staticmethod
    def _label(obj: dict) -> str | None:
        return (obj["metadata"].get("labels") or {}).get(POLICY_LABEL)

    def on_scc(self, typ, obj, t):
        self._part(self._label(obj), "scc", typ != "DELETED", t)
        self._notify("scc", typ, obj, t)

    def on_role(self, typ, obj, t):
        self._part(self._label(obj), "role", typ != "DELETED", t)

    def on_rolebinding(self, typ, obj, t):
        self._part(self._label(obj), "rolebinding", typ != "DELETED", t)

    def on_task(self, typ, obj, t):
        policy = self._label(obj)
        pinned = (obj["metadata"].get("annotations") or {}).get(REQUIRED_SCC) == f"buildpolicy-{policy}"
        self._part(policy, "task", typ != "DELETED" and pinned, t)
        self._notify("task", typ, obj, t)

    def on_policy(self, typ, obj, t):
        name = obj["metadata"]["name"]
        if name not in self.names:
            return
        conditions = (obj.get("status") or {}).get("conditions") or []
        ready = typ != "DELETED" and any(c.get("type") == "Ready" and c.get("status") == "True"
                                         for c in conditions)
        with self.lock:
            if ready != (name in self.ready):
                (self.ready.add if ready else self.ready.discard)(name)
                if self.t0 is not None:
                    self.ready_timeline.append((t - self.t0, len(self.ready)))
                self.lock.notify_all()

    def wait(self, what: str, count: int, timeout: float, exact: bool = False) -> bool:
        """Waits until len(objects_done or ready) reaches `count` (or, with
        `exact`, equals it); logs progress every 30 s."""
        deadline = time.monotonic() + timeout
        next_log = time.monotonic() + 30
        with self.lock:
            while True:
                have = len(self.objects_done if what == "objects" else self.ready)
                if (have == count) if exact else (have >= count):
                    return True
                now = time.monotonic()
                if now >= deadline:
                    return False
                if now >= next_log:
                    log(f"  ... {what}: {have}/{count} after {now - (self.t0 or now):.0f}s")
                    next_log = now + 30
                self.lock.wait(min(1.0, deadline - now))

    def last_time(self, what: str) -> float | None:
        timeline = self.objects_timeline if what == "objects" else self.ready_timeline
        return timeline[-1][0] if len(timeline) > 1 else None


def start_watches(kube: Kube, tracker: Tracker, stop: threading.Event) -> None:
    sel = {"labelSelector": POLICY_LABEL}
    start_watch(kube, SCC_PATH, tracker.on_scc, stop, sel)
    start_watch(kube, "/apis/rbac.authorization.k8s.io/v1/roles", tracker.on_role, stop, sel)
    start_watch(kube, "/apis/rbac.authorization.k8s.io/v1/rolebindings", tracker.on_rolebinding, stop, sel)
    start_watch(kube, "/apis/tekton.dev/v1/tasks", tracker.on_task, stop, sel)
    start_watch(kube, POLICY_PATH, tracker.on_policy, stop)


# -------------------------------------------------------------- objects --

def setup_objects(kube: Kube, n: int, workers: int) -> float:
    """N namespaces, a service account and 5 Tasks in each, by server-side
    apply from a thread pool."""
    t0 = time.monotonic()

    def namespace(i):
        kube.apply(f"/api/v1/namespaces/{ns_name(i)}",
                   {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns_name(i)}}, SETUP_MANAGER)

    def contents(i):
        ns = ns_name(i)
        kube.apply(f"/api/v1/namespaces/{ns}/serviceaccounts/{SERVICE_ACCOUNT}",
                   {"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": SERVICE_ACCOUNT, "namespace": ns}}, SETUP_MANAGER)
        for t in range(TASKS_PER_NAMESPACE):
            kube.apply(f"/apis/tekton.dev/v1/namespaces/{ns}/tasks/task-{t}", task_object(ns, f"task-{t}"),
                       SETUP_MANAGER)

    with futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(namespace, range(n)))
        list(pool.map(contents, range(n)))
    # kube-controller-manager gives each new namespace a `default` service
    # account and the kube-root-ca.crt ConfigMap; wait for it to finish, so
    # that its backlog does not compete with the first run.
    deadline = time.monotonic() + 300
    while True:
        sas, _ = kube.list("/api/v1/serviceaccounts", {"fieldSelector": "metadata.name=default"})
        cms, _ = kube.list("/api/v1/configmaps", {"fieldSelector": "metadata.name=kube-root-ca.crt"})
        done = [sum(1 for o in items if o["metadata"]["namespace"].startswith("bench-")) for items in (sas, cms)]
        if min(done) >= n:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"kube-controller-manager has not populated the namespaces after 300 s ({done} of {n})")
        time.sleep(1)
    return time.monotonic() - t0


def task_object(ns: str, name: str) -> dict:
    return {
        "apiVersion": "tekton.dev/v1", "kind": "Task",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"steps": [{
            "name": "build", "image": "quay.io/buildah/stable:v1.38",
            "script": "buildah bud -t image .",
        }]},
    }


def policies_yaml(n: int) -> str:
    caps = ", ".join(CAPABILITIES)
    return "".join(
        f"---\napiVersion: buildpolicy.dev/v1alpha1\nkind: BuildPolicy\nmetadata:\n  name: {policy_name(i)}\n"
        f"spec:\n  namespace: {ns_name(i)}\n  serviceAccountName: {SERVICE_ACCOUNT}\n"
        f"  capabilities: [{caps}]\n  tasks: [{PINNED_TASK}]\n"
        for i in range(n))


def render(operator_bin: str, policies_file: str) -> tuple[dict[str, list[str]], list[str]]:
    """The operator's `render` output, split into documents and grouped by
    policy (the buildpolicy.dev/policy label every rendered object has);
    also the SCC's allowedCapabilities as rendered."""
    out = subprocess.run([operator_bin, "render", "-f", policies_file], capture_output=True, text=True,
                         check=True).stdout
    docs = [d.strip() for d in re.split(r"^---\s*$", out, flags=re.M) if d.strip()]
    by_policy: dict[str, list[str]] = {}
    for doc in docs:
        m = re.search(rf"^\s+{re.escape(POLICY_LABEL)}:\s*(\S+)\s*$", doc, re.M)
        if not m:
            raise SystemExit(f"render printed a document without the {POLICY_LABEL} label:\n{doc[:400]}")
        by_policy.setdefault(m.group(1), []).append(doc)
    kinds = sorted(re.search(r"^kind:\s*(\S+)", d, re.M).group(1) for d in next(iter(by_policy.values())))
    if kinds != ["Role", "RoleBinding", "SecurityContextConstraints", "Task"]:
        raise SystemExit(f"render printed {kinds} for one policy; expected an SCC, a Role, a RoleBinding and a Task")
    scc_doc = next(d for d in next(iter(by_policy.values())) if "kind: SecurityContextConstraints" in d)
    caps_block = re.search(r"^allowedCapabilities:\n((?:- \S+\n?)+)", scc_doc, re.M)
    caps = re.findall(r"^- (\S+)", caps_block.group(1), re.M) if caps_block else []
    return by_policy, caps


def remove_rendered(kube: Kube, tracker: Tracker, n: int, workers: int, timeout: float) -> float:
    """Deletes the baseline's SCCs, Roles and RoleBindings and takes the pins
    off the Tasks; waits until the watches saw all of it."""
    t0 = time.monotonic()
    sel = {"labelSelector": POLICY_LABEL}
    kube.request("DELETE", SCC_PATH, query=sel)

    def one(i):
        ns = ns_name(i)
        kube.request("DELETE", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles", query=sel)
        kube.request("DELETE", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings", query=sel)
        kube.merge_patch(f"/apis/tekton.dev/v1/namespaces/{ns}/tasks/{PINNED_TASK}",
                         {"metadata": {"labels": {POLICY_LABEL: None}, "annotations": {REQUIRED_SCC: None}}},
                         DRIFT_MANAGER)

    with futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(n)))
    deadline = time.monotonic() + timeout
    while True:
        with tracker.lock:
            left = sum(len(p) for p in tracker.parts.values())
        if left == 0:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"baseline objects still present after {timeout}s ({left} left)")
        time.sleep(0.2)
    for path in (SCC_PATH, "/apis/rbac.authorization.k8s.io/v1/roles",
                 "/apis/rbac.authorization.k8s.io/v1/rolebindings", "/apis/tekton.dev/v1/tasks"):
        items, _ = kube.list(path, sel)
        if items:
            raise SystemExit(f"{len(items)} objects labelled {POLICY_LABEL} remain at {path}")
    return time.monotonic() - t0


# ------------------------------------------------------------- requests --

def request_snapshot(kube: Kube) -> dict:
    """apiserver_request_total and the duration histogram's sum/count, by
    (verb, group, resource, subresource)."""
    text = kube.get("/metrics")
    out: dict[tuple, dict] = {}
    for name, labels, value in parse_metrics(text, ("apiserver_request_total",
                                                    "apiserver_request_duration_seconds_sum",
                                                    "apiserver_request_duration_seconds_count")):
        key = (labels.get("verb", ""), labels.get("group", ""), labels.get("resource", ""),
               labels.get("subresource", ""))
        entry = out.setdefault(key, {"count": 0.0, "codes": {}, "seconds": 0.0, "timed": 0.0})
        if name == "apiserver_request_total":
            entry["count"] += value
            code = labels.get("code", "")
            entry["codes"][code] = entry["codes"].get(code, 0.0) + value
        elif name.endswith("_sum"):
            entry["seconds"] += value
        else:
            entry["timed"] += value
    return out


def request_delta(before: dict, after: dict) -> list[dict]:
    rows = []
    for key, a in after.items():
        b = before.get(key, {"count": 0.0, "codes": {}, "seconds": 0.0, "timed": 0.0})
        count = round(a["count"] - b["count"])
        if count <= 0:
            continue
        codes = {c: round(v - b["codes"].get(c, 0.0)) for c, v in a["codes"].items()}
        verb, group, resource, sub = key
        rows.append({
            "verb": verb, "group": group, "resource": resource, "subresource": sub, "count": count,
            "codes": {c: v for c, v in codes.items() if v > 0},
            "seconds": round(a["seconds"] - b["seconds"], 4),
            "operator_resource": (group, resource) in OPERATOR_RESOURCES,
        })
    rows.sort(key=lambda r: (-r["count"], r["resource"], r["verb"]))
    return rows


def writes(rows: list[dict]) -> tuple[int, list[dict], list[dict]]:
    """(operator's write count, its rows, other writers' rows)."""
    w = [r for r in rows if r["verb"] in WRITE_VERBS]
    ours = [r for r in w if r["operator_resource"]]
    return sum(r["count"] for r in ours), ours, [r for r in w if not r["operator_resource"]]


# ------------------------------------------------------------- operator --

def free_port() -> int:
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Operator:
    def __init__(self, binary: str, kubeconfig: str, resync: int, log_path: str, extra_env: dict | None = None):
        self.port = free_port()
        self.log_file = open(log_path, "ab")
        env = dict(os.environ, KUBECONFIG=kubeconfig, **(extra_env or {}))
        env.pop("POD_NAME", None)
        self.proc = subprocess.Popen(
            [binary, "run", "--metrics-addr", f"127.0.0.1:{self.port}", "--resync-seconds", str(resync)],
            stdout=self.log_file, stderr=subprocess.STDOUT, env=env)
        self.pid = self.proc.pid

    def http(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""

    def wait_leader(self, timeout: float) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"the operator exited ({self.proc.returncode}); see {self.log_file.name}")
            status, body = self.http("/readyz")
            if status == 200 and body.strip() == "leader":
                return time.monotonic() - t0
            time.sleep(0.1)
        raise SystemExit(f"the operator was not ready within {timeout}s; see {self.log_file.name}")

    def metrics(self) -> list:
        status, body = self.http("/metrics")
        return parse_metrics(body) if status == 200 else []

    def stats(self) -> dict:
        return proc_stats(self.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()


def operator_summary(before: list, after: list) -> dict:
    """Reconciles and the reconcile-duration histogram between two scrapes."""
    def by(samples):
        out = {}
        for name, labels, value in samples:
            out[(name, tuple(sorted(labels.items())))] = value
        return out

    b, a = by(before), by(after)
    delta = {k: v - b.get(k, 0.0) for k, v in a.items()}
    result = {}
    for (name, labels), v in delta.items():
        lab = dict(labels)
        if name == "buildpolicy_reconciliations_total":
            result[f"reconciles_{lab.get('result')}"] = round(v)
        elif name == "buildpolicy_reconcile_errors_total" and v > 0:
            result.setdefault("errors", {})[lab.get("reason")] = round(v)
        elif name == "buildpolicy_drift_corrections_total" and v > 0:
            result.setdefault("drift_corrections", {})[lab.get("kind")] = round(v)
    buckets = sorted(((float(dict(l)["le"]), v) for (n, l), v in delta.items()
                      if n == "buildpolicy_reconcile_duration_seconds_bucket"), key=lambda x: x[0])
    count = sum(v for (n, _), v in delta.items() if n == "buildpolicy_reconcile_duration_seconds_count")
    total = sum(v for (n, _), v in delta.items() if n == "buildpolicy_reconcile_duration_seconds_sum")
    result["reconcile_seconds_total"] = round(total, 3)
    result["reconcile_count"] = round(count)
    result["reconcile_mean_ms"] = round(1000 * total / count, 2) if count else None
    result["reconcile_buckets"] = [[le, round(v)] for le, v in buckets]
    for q in (0.5, 0.9, 0.99):
        result[f"reconcile_p{int(q * 100)}_le_seconds"] = quantile_bound(buckets, count, q)
    return result


def quantile_bound(buckets: list, count: float, q: float) -> float | None:
    """The upper bound of the histogram bucket holding quantile q."""
    if not count:
        return None
    for le, cumulative in buckets:
        if cumulative >= q * count:
            return le
    return None


# ----------------------------------------------------------------- perf --

class Perf:
    """A CPU profile of the operator: perf record at 99 Hz with call graphs
    unwound from DWARF CFI (.eh_frame; the release build has neither frame
    pointers nor debug info). Reported twice: self time per function, and
    time including callees for the operator's own functions."""

    def __init__(self, pid: int, path: str):
        self.path = path
        self.proc = subprocess.Popen(["perf", "record", "-F", "99", "--call-graph", "dwarf,16384", "-p", str(pid),
                                      "-o", path, "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _report(self, children: bool) -> dict[tuple[str, str], float]:
        out = subprocess.run(["perf", "report", "-i", self.path, "--stdio", "-g", "none",
                              "--children" if children else "--no-children", "--sort", "dso,symbol",
                              "--percent-limit", "0.5"], capture_output=True, text=True).stdout
        # Monomorphised copies of one function share a name: added up (self
        # time only; including callees they may nest).
        totals: dict[tuple[str, str], float] = {}
        for line in out.splitlines():
            m = re.match(r"^\s+([\d.]+)%\s+(?:([\d.]+)%\s+)?(\S+)\s+\[[.k]\]\s+(.*)$", line)
            if m:
                symbol = re.split(r"\s{2,}", m.group(4).strip())[0][:160]
                key = (m.group(3), symbol)
                value = float(m.group(1))
                totals[key] = max(totals.get(key, 0.0), value) if children else totals.get(key, 0.0) + value
        return totals

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.path = None

    def report(self, top: int = 25) -> dict:
        """Unwinding takes a while: called when the measurements are over."""
        if not self.path:
            return {}
        rows = lambda totals: sorted(({"percent": round(p, 2), "dso": d, "symbol": s}  # noqa: E731
                                      for (d, s), p in totals.items()), key=lambda r: -r["percent"])
        own = re.compile(r"^(buildpolicy_|kube_runtime::|kube_client::|<?kube_)")
        return {
            "self": rows(self._report(False))[:top],
            "inclusive": [r for r in rows(self._report(True)) if own.match(r["symbol"])][:top],
        }


def perf_usable() -> bool:
    if not shutil.which("perf"):
        return False
    try:
        r = subprocess.run(["perf", "stat", "-e", "task-clock", "true"], capture_output=True, timeout=30)
        return r.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# ---------------------------------------------------------------- drift --

def drift_repairs(kube: Kube, tracker: Tracker, n: int, edits: int, desired_caps: list[str],
                  timeout: float = 30) -> dict:
    """`edits` out-of-band edits, alternating: an extra capability in a
    managed SCC's allowedCapabilities, and the pin annotation removed from a
    pinned Task. Latency: from the edit's response to the watch event that
    shows the object reverted (resourceVersion after the edit's)."""
    samples = {"scc": [], "task": []}
    missed = 0
    for k in range(edits):
        i = (k * 37) % n
        name, ns = policy_name(i), ns_name(i)
        kind = "scc" if k % 2 == 0 else "task"
        if kind == "scc":
            key, path = f"/buildpolicy-{name}", f"{SCC_PATH}/buildpolicy-{name}"
            patch = {"allowedCapabilities": desired_caps + ["NET_ADMIN"]}

            def reverted(o):
                return o.get("allowedCapabilities") == desired_caps
        else:
            key, path = f"{ns}/{PINNED_TASK}", f"/apis/tekton.dev/v1/namespaces/{ns}/tasks/{PINNED_TASK}"
            patch = {"metadata": {"annotations": {REQUIRED_SCC: None}}}

            def reverted(o):
                return (o["metadata"].get("annotations") or {}).get(REQUIRED_SCC) == f"buildpolicy-{name}"

        seen: list[tuple[float, int, bool]] = []
        cv = threading.Condition()

        def observer(k_, typ, obj, t, key=key, reverted=reverted):
            m = obj["metadata"]
            if k_ == kind and f"{m.get('namespace', '')}/{m['name']}" == key and typ != "DELETED":
                with cv:
                    seen.append((t, int(m["resourceVersion"]), reverted(obj)))
                    cv.notify_all()

        tracker.observers.append(observer)
        try:
            edited = kube.merge_patch(path, patch, DRIFT_MANAGER)
            t_edit = time.monotonic()
            rv_edit = int(edited["metadata"]["resourceVersion"])
            hit = None
            with cv:
                deadline = t_edit + timeout
                while hit is None:
                    hit = next((t for t, rv, ok in seen if rv > rv_edit and ok), None)
                    if hit is not None or time.monotonic() > deadline:
                        break
                    cv.wait(0.5)
        finally:
            tracker.observers.remove(observer)
        if hit is None:
            missed += 1
        else:
            samples[kind].append(max(0.0, hit - t_edit))
        time.sleep(0.1)
    all_ = sorted(samples["scc"] + samples["task"])
    return {
        "edits": edits, "reverted": len(all_), "not_reverted_within_s": timeout if missed else None,
        "missed": missed,
        "p50_ms": ms(percentile(all_, 50)), "p99_ms": ms(percentile(all_, 99)), "max_ms": ms(max(all_, default=None)),
        "scc_p50_ms": ms(percentile(sorted(samples["scc"]), 50)),
        "task_p50_ms": ms(percentile(sorted(samples["task"]), 50)),
        "samples_ms": [ms(x) for x in all_],
    }


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not sorted_values:
        return None
    rank = max(1, -(-p * len(sorted_values) // 100))
    return sorted_values[int(rank) - 1]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


# ------------------------------------------------------------------ run --

def baseline_run(label: str, cluster: Cluster, kube: Kube, tracker: Tracker, shards: list[str],
                 n: int, timeout: float, log_dir: str) -> dict:
    log(f"  {label}: {len(shards)} kubectl apply --server-side process(es)")
    cpu0 = cluster.cpu()
    req0 = request_snapshot(kube)
    t0 = time.monotonic()
    tracker.begin(t0)
    procs = []
    for k, shard in enumerate(shards):
        out = open(os.path.join(log_dir, f"{label}-{n}-{k}.log"), "wb")
        procs.append((subprocess.Popen([cluster.kubectl, "--kubeconfig", cluster.kubeconfig, "apply",
                                        "--server-side", "-f", shard], stdout=out, stderr=subprocess.STDOUT),
                      out))
    kubectl_cpu, kubectl_end = 0.0, 0.0
    for p, out in procs:
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.close()
        kubectl_end = max(kubectl_end, time.monotonic() - t0)
        kubectl_cpu += usage.ru_utime + usage.ru_stime
        if p.returncode != 0:
            raise SystemExit(f"kubectl apply failed ({p.returncode}); see {out.name}")
    done = tracker.wait("objects", n, timeout)
    conv = tracker.last_time("objects") if done else None
    cpu1 = cluster.cpu()
    req1 = request_snapshot(kube)
    result = {
        "processes": len(shards), "convergence_seconds": r3(conv), "kubectl_wall_seconds": r3(kubectl_end),
        "kubectl_cpu_seconds": r3(kubectl_cpu), "complete": len(tracker.objects_done),
        "cpu_seconds": {name: r3(cpu1.get(name, 0) - cpu0.get(name, 0)) for name in cpu1},
        "requests": [r for r in request_delta(req0, req1) if r["verb"] not in ("WATCH",)],
        "timeline": thin(tracker.objects_timeline),
    }
    log(f"  {label}: {result['complete']}/{n} in {conv if conv is None else round(conv, 2)}s "
        f"(kubectl done at {kubectl_end:.2f}s)")
    return result


def thin(timeline: list[tuple[float, int]], keep: int = 400) -> list[list[float]]:
    """At most ~`keep` points, always keeping the first and last."""
    if len(timeline) <= keep:
        return [[round(t, 3), c] for t, c in timeline]
    step = len(timeline) / keep
    picked = [timeline[int(k * step)] for k in range(keep)] + [timeline[-1]]
    return [[round(t, 3), c] for t, c in picked]


def r3(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def run_size(n: int, args, cluster: Cluster, log_dir: str) -> dict:
    result: dict = {"n": n, "loadavg_start": loadavg()}
    log(f"N={n}: starting a fresh control plane in {cluster.state}")
    result["cluster_up_seconds"] = r3(cluster.up())
    result["server_version"] = cluster.server_version()
    kube = Kube(cluster.kubeconfig)
    names = [policy_name(i) for i in range(n)]
    tracker = Tracker(names)
    stop = threading.Event()
    start_watches(kube, tracker, stop)

    log(f"N={n}: {n} namespaces, {n} service accounts, {n * TASKS_PER_NAMESPACE} Tasks")
    result["setup_seconds"] = r3(setup_objects(kube, n, args.workers))
    work = os.path.join(args.work_dir, str(n))
    os.makedirs(work, exist_ok=True)
    policies_file = os.path.join(work, "policies.yaml")
    with open(policies_file, "w") as f:
        f.write(policies_yaml(n))
    by_policy, desired_caps = render(args.operator, policies_file)
    if sorted(by_policy) != sorted(names):
        raise SystemExit("render did not print objects for every policy")

    # Baselines: one kubectl for everything; then P kubectl on shards.
    serial = os.path.join(work, "rendered.yaml")
    with open(serial, "w") as f:
        f.write("".join(f"---\n{d}\n" for name in names for d in by_policy[name]))
    shards = []
    for k in range(args.parallel):
        path = os.path.join(work, f"rendered-{k}.yaml")
        with open(path, "w") as f:
            f.write("".join(f"---\n{d}\n" for name in names[k::args.parallel] for d in by_policy[name]))
        shards.append(path)
    timeout = args.timeout if args.timeout else 300 + 3 * n
    result["baseline_serial"] = baseline_run("baseline-serial", cluster, kube, tracker, [serial], n, timeout,
                                             log_dir)
    result["baseline_serial"]["cleanup_seconds"] = r3(remove_rendered(kube, tracker, n, args.workers, 300))
    result["baseline_parallel"] = baseline_run("baseline-parallel", cluster, kube, tracker, shards, n, timeout,
                                               log_dir)
    result["baseline_parallel"]["cleanup_seconds"] = r3(remove_rendered(kube, tracker, n, args.workers, 300))

    # The operator.
    log(f"N={n}: the operator (--resync-seconds {args.resync_seconds})")
    op = Operator(args.operator, cluster.kubeconfig, args.resync_seconds,
                  os.path.join(log_dir, f"operator-{n}.log"), args.operator_env)
    o: dict = {}
    try:
        o["startup_seconds"] = r3(op.wait_leader(120))
        o["rss_kib_idle"] = op.stats().get("vmrss_kib")
        perf = Perf(op.pid, os.path.join(work, "perf.data")) if args.perf else None
        m0, cpu0, req0, st0 = op.metrics(), cluster.cpu(), request_snapshot(kube), op.stats()
        t0 = time.monotonic()
        tracker.begin(t0)
        applied = run_timed([cluster.kubectl, "--kubeconfig", cluster.kubeconfig, "apply", "--server-side",
                             "-f", policies_file], os.path.join(log_dir, f"policies-{n}.log"))
        o["kubectl_wall_seconds"] = r3(applied["wall_seconds"])
        done = tracker.wait("ready", n, timeout)
        t_conv = time.monotonic()
        conv = tracker.last_time("ready") if done else None
        objects_done = tracker.wait("objects", n, 0 if not done else 30)
        m1, cpu1, req1, st1 = op.metrics(), cluster.cpu(), request_snapshot(kube), op.stats()
        if perf:
            perf.stop()
        o.update({
            "convergence_seconds": r3(conv), "ready": len(tracker.ready),
            "first_ready_seconds": r3(tracker.ready_timeline[1][0]) if len(tracker.ready_timeline) > 1 else None,
            "objects_complete_seconds": r3(tracker.last_time("objects")) if objects_done else None,
            "timeline": thin(tracker.ready_timeline), "objects_timeline": thin(tracker.objects_timeline),
            "rss_peak_kib_at_convergence": st1.get("vmhwm_kib"), "rss_kib_at_convergence": st1.get("vmrss_kib"),
            "cpu_seconds_at_convergence": r3(st1.get("cpu_seconds")),
            "cpu_seconds_convergence": r3(st1.get("cpu_seconds", 0) - st0.get("cpu_seconds", 0)),
            "cluster_cpu_seconds": {k: r3(cpu1.get(k, 0) - cpu0.get(k, 0)) for k in cpu1},
            "reconciles": operator_summary(m0, m1),
            "requests": [r for r in request_delta(req0, req1) if r["verb"] != "WATCH"],
        })
        log(f"  operator: {o['ready']}/{n} Ready in {conv if conv is None else round(conv, 2)}s"
            f" (objects complete at {o['objects_complete_seconds']}s); wait at most {timeout}s")
        if not done:
            o["timed_out_after_seconds"] = round(time.monotonic() - t0)

        # Steady state: a short settle, then two resync periods.
        time.sleep(max(0.0, t_conv + args.settle_seconds - time.monotonic()))
        req_s0, m_s0 = request_snapshot(kube), op.metrics()
        settle_writes = writes(request_delta(req1, req_s0))
        log(f"  steady state: {args.steady_seconds}s (2 x --resync-seconds {args.resync_seconds})")
        time.sleep(args.steady_seconds)
        req_s1, m_s1, st2 = request_snapshot(kube), op.metrics(), op.stats()
        count, ours, others = writes(request_delta(req_s0, req_s1))
        o["steady"] = {
            "window_seconds": args.steady_seconds, "settle_seconds": args.settle_seconds,
            "settle_writes": settle_writes[0], "settle_breakdown": strip(settle_writes[1]),
            "operator_writes": count, "breakdown": strip(ours), "other_writers": strip(others),
            "reads": strip([r for r in request_delta(req_s0, req_s1)
                            if r["verb"] in ("GET", "LIST") and r["operator_resource"]]),
            "reconciles": operator_summary(m_s0, m_s1),
        }
        o["rss_peak_kib_after_steady"] = st2.get("vmhwm_kib")
        o["cpu_seconds_after_steady"] = r3(st2.get("cpu_seconds"))
        log(f"  steady state: {count} operator write request(s)"
            + (": " + ", ".join(f"{r['verb']} {r['resource']}{'/' + r['subresource'] if r['subresource'] else ''}"
                                f" x{r['count']}" for r in ours) if ours else ""))

        if args.long_steady_seconds:
            log(f"  long steady state: {args.long_steady_seconds}s more")
            time.sleep(args.long_steady_seconds)
            req_s2 = request_snapshot(kube)
            c2, ours2, _ = writes(request_delta(req_s1, req_s2))
            o["long_steady"] = {"window_seconds": args.long_steady_seconds, "operator_writes": c2,
                                "breakdown": strip(ours2)}
            log(f"  long steady state: {c2} operator write request(s)")

        # Drift repair.
        log(f"  drift: {args.drift_edits} out-of-band edits")
        req_d0, m_d0 = request_snapshot(kube), op.metrics()
        o["drift"] = drift_repairs(kube, tracker, n, args.drift_edits, desired_caps)
        req_d1, m_d1, st3 = request_snapshot(kube), op.metrics(), op.stats()
        o["drift"]["requests"] = strip([r for r in request_delta(req_d0, req_d1)
                                        if r["verb"] in WRITE_VERBS and r["operator_resource"]])
        o["drift"]["reconciles"] = operator_summary(m_d0, m_d1)
        log(f"  drift: p50 {o['drift']['p50_ms']} ms, p99 {o['drift']['p99_ms']} ms,"
            f" {o['drift']['missed']} not reverted")
        o["rss_peak_kib"] = st3.get("vmhwm_kib")
        o["rss_kib_end"] = st3.get("vmrss_kib")
        o["rss_anon_kib_end"], o["rss_file_kib_end"] = st3.get("rssanon_kib"), st3.get("rssfile_kib")
        o["cpu_seconds_total"] = r3(st3.get("cpu_seconds"))
        o["profile"] = perf.report() if perf else None
    finally:
        op.stop()
        stop.set()
    result["operator"] = o
    result["loadavg_end"] = loadavg()
    if not args.keep:
        cluster.down()
    return result


def strip(rows: list[dict]) -> list[dict]:
    return [{k: r[k] for k in ("verb", "group", "resource", "subresource", "count", "codes", "seconds")}
            for r in rows]


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    mem = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem / 1024 / 1024, 1),
            "kernel": platform.release(), "python": platform.python_version()}


def git_info(source_commit: str | None) -> dict:
    if source_commit:
        return {"commit": source_commit, "crates_dirty": False, "built_from": "git archive of the commit"}

    def git(*a):
        return subprocess.run(["git", "-C", ROOT, *a], capture_output=True, text=True).stdout.strip()
    return {"commit": git("rev-parse", "HEAD"), "built_from": "the working tree",
            "crates_dirty": bool(git("status", "--porcelain", "--", "crates", "Cargo.lock", "Cargo.toml"))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,500,1000")
    ap.add_argument("--out", required=True, help="directory for results.json and results.md")
    ap.add_argument("--work-dir", required=True, help="scratch directory (generated YAML, perf data)")
    ap.add_argument("--log-dir", required=True)
    ap.add_argument("--cluster-dir", required=True)
    ap.add_argument("--operator", required=True, help="the release binary")
    ap.add_argument("--resync-seconds", type=int, default=30)
    ap.add_argument("--steady-seconds", type=int, default=None, help="default: 2 x --resync-seconds")
    ap.add_argument("--long-steady-seconds", type=int, default=0,
                    help="a further window after the steady one (0: none)")
    ap.add_argument("--settle-seconds", type=float, default=5.0)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--workers", type=int, default=8, help="threads for setup and cleanup")
    ap.add_argument("--drift-edits", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=0, help="convergence timeout (default 300 + 3 s x N)")
    ap.add_argument("--perf", action="store_true")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--gate", action="store_true", help="exit 1 if the operator writes in steady state")
    ap.add_argument("--max-requests-per-policy", type=float, default=None,
                    help="with --gate: also exit 1 if converging took more write requests per policy "
                         "(the API server's counts do not say who read: kube-controller-manager's "
                         "garbage collector sometimes GETs the operator's objects)")
    ap.add_argument("--command", default="hack/bench.sh")
    ap.add_argument("--operator-env", action="append", default=[], metavar="KEY=VALUE",
                    help="environment for the operator (an experiment, e.g. MALLOC_ARENA_MAX=2)")
    ap.add_argument("--source-commit", help="the commit the operator was built from (git archive)")
    args = ap.parse_args()
    args.operator_env = dict(kv.split("=", 1) for kv in args.operator_env)
    if args.steady_seconds is None:
        args.steady_seconds = 2 * args.resync_seconds
    if args.perf and not perf_usable():
        log("perf is not usable here (missing, or perf_event_paranoid): no CPU profile")
        args.perf = False
    for d in (args.out, args.work_dir, args.log_dir):
        os.makedirs(d, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    results = {
        "command": args.command,
        "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(), "git": git_info(args.source_commit),
        "operator_sha256": hashlib.sha256(open(args.operator, "rb").read()).hexdigest()[:16],
        "operator_build": "release" if "/release/" in args.operator else "dev (unoptimised)",
        "resync_seconds": args.resync_seconds, "steady_seconds": args.steady_seconds,
        "perf": args.perf, "operator_env": args.operator_env, "parallel": args.parallel, "tasks_per_namespace": TASKS_PER_NAMESPACE, "drift_edits": args.drift_edits,
        "loadavg_start": loadavg(), "sizes": {},
    }
    cluster = Cluster(args.cluster_dir, args.log_dir)
    t_all = time.monotonic()
    try:
        for n in sizes:
            results["sizes"][str(n)] = run_size(n, args, cluster, args.log_dir)
            write_results(args.out, results)
    except BaseException:
        if not args.keep:
            try:
                cluster.down()
            except Exception:  # noqa: BLE001
                pass
        raise
    results["loadavg_end"] = loadavg()
    results["wall_seconds"] = round(time.monotonic() - t_all)
    write_results(args.out, results)
    print(open(os.path.join(args.out, "results.md")).read())
    if args.gate:
        bad = {n: r["operator"]["steady"]["operator_writes"] for n, r in results["sizes"].items()
               if r["operator"]["steady"]["operator_writes"] or r["operator"].get("long_steady", {}).get("operator_writes")}
        not_ready = [n for n, r in results["sizes"].items() if r["operator"].get("convergence_seconds") is None]
        per_policy = {n: sum(q["count"] for q in r["operator"].get("requests", [])
                             if q["verb"] not in ("GET", "LIST", "WATCH")) / int(n)
                      for n, r in results["sizes"].items()}
        limit = args.max_requests_per_policy
        too_many = {n: round(v, 2) for n, v in per_policy.items() if limit is not None and v > limit}
        if bad or not_ready or too_many:
            if bad:
                print(f"FAIL: the operator sent write requests in steady state: {bad} (see the breakdown above)",
                      file=sys.stderr)
            if not_ready:
                print(f"FAIL: not every policy became Ready at N={not_ready}", file=sys.stderr)
            if too_many:
                print(f"FAIL: converging took more than {limit} write requests per policy: {too_many} "
                      "(see the table of requests above)", file=sys.stderr)
            return 1
        print("steady state: 0 write requests from the operator")
        if limit is not None:
            print(f"converging: {', '.join(f'{v:.2f}' for v in per_policy.values())} write requests per policy "
                  f"(at most {limit})")
    return 0


def write_results(out: str, results: dict) -> None:
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(report.markdown(results))


if __name__ == "__main__":
    sys.exit(main())
