#!/usr/bin/env python3
"""Chart of a bench/suite.py run: grouped bars per scenario, the systems side by side.

    .venv/bin/python bench/plot.py [bench/results.json [bench/results.png]]

One panel per scenario group (lock pairs, KV write 64 B / 1 KB / 10 KB, atomic add:
operations per second, higher is better; the original Go server's published figure as a
black line where there is one) and one for the watch rows (reaction time, lower is
better). A panel whose values span more than 100× is drawn on a log scale.

matplotlib is needed only here: when this Python lacks it, a private venv is made in
bench/out/plot-venv (git-ignored), matplotlib is pip-installed into it, and this script
re-runs itself there. The project's .venv is left alone.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PLOT_VENV = BENCH / "out" / "plot-venv"

COLORS = {"cdragon": "#d62728", "redis": "#1f77b4", "etcd": "#2ca02c", "ceiling": "#9e9e9e"}
NAMES = {"cdragon": "cdragon", "redis": "Redis (AOF always)", "etcd": "etcd 3.4 (gateway)",
         "ceiling": "ceiling: uvloop+httptools `{}` (req/s)"}
GROUPS = [("lock", "lock+unlock pairs/s"), ("kv64", "KV write 64 B, req/s"), ("kv1k", "KV write 1 KB, req/s"),
          ("kv10k", "KV write 10 KB, req/s"), ("add", "atomic add, req/s")]


def ensure_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
        return
    except ImportError:
        pass
    if os.environ.get("CDRAGON_PLOT_REEXEC"):
        raise SystemExit("plot.py: matplotlib still missing in the plot venv")
    py = PLOT_VENV / "bin" / "python"
    if not py.exists():
        print(f"plot.py: making {PLOT_VENV} for matplotlib", file=sys.stderr)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(PLOT_VENV)], check=True, timeout=300)
    if subprocess.run([str(py), "-c", "import matplotlib"], capture_output=True).returncode != 0:
        print("plot.py: pip install matplotlib (plot venv only)", file=sys.stderr)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "matplotlib"], check=True, timeout=900)
    env = dict(os.environ, CDRAGON_PLOT_REEXEC="1")
    os.execve(str(py), [str(py), str(Path(__file__).resolve()), *sys.argv[1:]], env)


def watch_label(sc: str) -> str:
    kind, _, arg = sc.partition(":")
    if kind == "one":
        return f"{int(arg):,}"
    k, _, w = arg.partition("x")
    return f"{int(k):,} keys×{w}"


def main() -> int:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else BENCH / "results.json"
    dst = Path(sys.argv[2]) if len(sys.argv) > 2 else src.with_suffix(".png")
    ensure_matplotlib()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(src.read_text())
    rows = {r["id"]: r for r in data["rows"]}
    recs = {(r["row"], r["system"]): r for r in data["records"]}
    meta = data.get("meta", {})

    panels = []
    for g, title in GROUPS:
        ids = [rid for rid, r in rows.items() if r["group"] == g and any((rid, s) in recs for s in COLORS)]
        if ids:
            panels.append(("thr", g, title, ids))
    watch = data.get("watch") or []
    wids = [rid for rid, r in rows.items() if r["group"] == "watch"
            and any(w.get("scenario") == r["watch"] for w in watch)]
    if wids:
        panels.append(("watch", "watch", "watch reaction, ms (lower is better)", wids))
    if not panels:
        print("plot.py: nothing to plot", file=sys.stderr)
        return 1

    ncol = 3 if len(panels) > 2 else len(panels)
    nrow = (len(panels) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(6.2 * ncol, 4.6 * nrow), squeeze=False)
    handles = {}
    for ax, (kind, g, title, ids) in zip(axes.flat, panels):
        if kind == "thr":
            systems = [s for s in ("cdragon", "redis", "etcd", "ceiling") if any((i, s) in recs for i in ids)]
            width = 0.8 / len(systems)
            for j, s in enumerate(systems):
                xs, ys = [], []
                for i, rid in enumerate(ids):
                    r = recs.get((rid, s))
                    if not r or "failed" in r:
                        continue
                    v = r.get("rps") if s == "ceiling" else r.get("ops_rps")
                    if v:
                        xs.append(i - 0.4 + width * (j + 0.5))
                        ys.append(v)
                handles[s] = ax.bar(xs, ys, width, color=COLORS[s], label=NAMES[s])
            for i, rid in enumerate(ids):
                if rows[rid].get("ref"):
                    handles["ref"] = ax.plot([i - 0.4, i + 0.4], [rows[rid]["ref"]] * 2, color="black", lw=2,
                                             label="Go original (published)")[0]
            ax.set_xticks(range(len(ids)))
            ax.set_xticklabels([rid.split("-", 1)[1].replace("x", "×") for rid in ids])
            ax.set_xlabel("accounts × keys")
        else:
            systems = [s for s in ("cdragon", "redis", "ceiling") if any(w.get("system") == s for w in watch)]
            width = 0.8 / max(len(systems), 1)
            for j, s in enumerate(systems):
                xs, ys = [], []
                for i, rid in enumerate(ids):
                    w = next((w for w in watch if w.get("scenario") == rows[rid]["watch"] and w.get("system") == s), None)
                    try:
                        xs.append(i - 0.4 + width * (j + 0.5))
                        ys.append(w["reaction_us"]["median"] / 1000)
                    except (TypeError, KeyError):
                        xs.pop()
                label = "fan-out ceiling (bench/fanout_ceiling.py)" if s == "ceiling" else NAMES[s]
                b = ax.bar(xs, ys, width, color=COLORS[s], label=label)
                handles.setdefault(s, b)
            ax.set_xticks(range(len(ids)))
            ax.set_xticklabels([watch_label(rows[rid]["watch"]) for rid in ids], fontsize=8)
            ax.set_xlabel("watchers")
        values = [b.get_height() for c in ax.containers for b in c if b.get_height() > 0]
        if values and max(values) / min(values) > 100:
            ax.set_yscale("log")        # lock pairs (1×1 vs 1000×1000) and watch rows span decades
            ax.set_title(title + " (log scale)")
        else:
            ax.set_title(title)
        ax.grid(axis="y", which="both", alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    order = [k for k in ("cdragon", "redis", "etcd", "ceiling", "ref") if k in handles]
    fig.legend([handles[k] for k in order], [handles[k].get_label() for k in order],
               loc="lower center", ncol=len(order), frameon=False)
    fig.suptitle(f"Cloud Dragon vs Redis vs etcd, same run\n{meta.get('date', '?')}; "
                 f"{meta.get('duration', '?')} s per run, {meta.get('connections', 400)} connections, "
                 "server on CPU 0, client on CPU 1", fontsize=11)
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    dst.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dst, dpi=110)
    print(f"plot.py: wrote {dst}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
