#!/usr/bin/env python3
"""The ready-over-time plot (PNG) of a benchmark's results.json: per N, the
count of policies over time for the operator (Ready, and its objects
existing) and the two kubectl baselines. hack/bench.sh calls it after a full
run, with the Python of target/bench-venv (matplotlib); it reads only
results.json, which `buildpolicy-bench run` writes:

  target/bench-venv/bin/python hack/bench/plot.py docs/bench/results.json docs/bench/ready-over-time.png

The tables come from `buildpolicy-bench report` (crates/bench).
"""

from __future__ import annotations

import argparse
import json
import sys


def plot(results: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(results["sizes"], key=int)
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.2 * len(sizes), 4.2), squeeze=False)
    for ax, n in zip(axes[0], sizes):
        r = results["sizes"][n]
        series = [
            ("operator: Ready", r["operator"].get("timeline"), "C3", "-"),
            ("operator: objects exist", r["operator"].get("objects_timeline"), "C3", ":"),
            ("baseline serial (1 kubectl)", r["baseline_serial"].get("timeline"), "C0", "-"),
            (f"baseline parallel ({r['baseline_parallel'].get('processes')} kubectl)",
             r["baseline_parallel"].get("timeline"), "C2", "--"),
        ]
        for label, tl, color, style in series:
            if tl:
                xs = [p[0] for p in tl]
                ys = [p[1] for p in tl]
                ax.step(xs, ys, where="post", label=label, color=color, linestyle=style)
        ax.set_title(f"N = {n}")
        ax.set_xlabel("seconds since the first apply")
        ax.set_ylabel("policies ready")
        ax.set_ylim(0, int(n) * 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    m = results["machine"]
    fig.suptitle(f"buildpolicy-operator vs kubectl apply --server-side of the rendered objects "
                 f"({m['nproc']} CPUs, {results['started'][:10]})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="results.json of a run")
    ap.add_argument("png", help="where to write the plot")
    args = ap.parse_args()
    with open(args.results, encoding="utf-8") as f:
        plot(json.load(f), args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
