"""The full suite's report: the Markdown section of bench/RESULTS.md (between
`<!-- suite:begin -->` and `<!-- suite:end -->`), the notes on anything that makes a row
not a clean measurement, and bench/results.json in its compact form (one line per row
and per record, so a new run's diff shows what changed).

Never measures; reads only the records it is given. bench/report.py is the quick.sh
report, a separate table.
"""
from __future__ import annotations

import json
from pathlib import Path

from knobs import BENCH
from rows import Row, unit

BEGIN = "<!-- suite:begin -->"
END = "<!-- suite:end -->"


def fmt_rate(x: float | None) -> str:
    if x is None:
        return "—"
    if x >= 100_000:
        return f"{x / 1000:,.0f}k"
    if x >= 1000:
        return f"{x / 1000:,.1f}k"
    return f"{x:,.0f}"


def fmt_ms(us) -> str:
    if us is None:
        return "—"
    ms = us / 1000
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


def ratio(a, b) -> str:
    if not a or not b:
        return "—"
    return f"{a / b:.2f}×"


def by_system(recs: list[dict], row: Row) -> dict[str, dict]:
    return {r["system"]: r for r in recs if r["row"] == row.id}


def usable(rec: dict | None) -> bool:
    return bool(rec) and "failed" not in rec and rec.get("ops_rps") is not None


def build_section(rows: list[Row], recs: list[dict], watch_recs: list[dict], meta: dict,
                  notes: list[str]) -> str:
    L = [BEGIN, "", "## Full suite (make bench)", ""]
    L += [
        "Measured by `bench/suite.py` (`make bench`; `SCENARIOS=regex` for a subset; what each system",
        "is asked to do in `bench/SUITE.md`). Every system is started fresh for every row in a temp dir",
        f"on the real disk, pinned to CPU 0; the load generator is pinned to CPU 1; {meta['connections']} connections;",
        f"a {meta['warmup']} s warm-up, then {meta['duration']} s measured. The systems take turns row by row",
        *(["(ceiling, cdragon, Redis, etcd), so a row's ratios compare runs a minute or two apart on this"]
          if meta.get("rounds", 1) < 2 else
          ["(ceiling, cdragon, Redis, etcd; then cdragon and Redis again: "
           f"{meta['rounds']} runs each, shown as their mean,",
           "each run's figure in the latency table), so a row's ratios compare runs minutes apart on this"]),
        "shared machine, which drifts by ±30 %: read the ratios, not the absolute figures. Accounts and",
        "keys are drawn at random per request (A×K = A accounts × K keys; Redis and etcd have no",
        "accounts: there the account is a key prefix). Higher is better everywhere but in the watch table.",
        "",
        "- **cdragon**: `python -m cdragon serve`, driven by wrk (`bench/lua/suite_write.lua`, `suite_lock.lua`).",
        "- **Redis** 7: `appendonly yes`, `appendfsync always` (ack after fsync, group commit per event-loop pass);",
        "  `redis-benchmark` runs `SET a<A>:k<K> <value>` / `INCR a<A>:k<K>`. Lock pairs: `SET k 1 NX PX 30000`",
        "  then, when granted, `DEL k`: two round trips per pair, by `suite.py redis-lock-client` (uvloop, raw",
        "  RESP, one Python process on CPU 1; see its core-busy figure: near 100 % means the row is client-bound).",
        "- **etcd** 3.4, single node, HTTP/JSON gateway: `POST /v3/kv/put` (base64 key and value). Lock pairs: a",
        "  `/v3/kv/txn` try-lock (create if absent, with a lease) then `/v3/kv/deleterange`. No atomic add row:",
        "  etcd has no counter (an add is a read + compare-and-swap loop).",
        "- **ceiling**: `bench/ceiling_server.py` (bare uvloop + httptools answering `{}`), sent the very same",
        "  requests by the same wrk script: nothing on cdragon's stack answers faster on one core.",
        "- Lock rows count completed lock+unlock pairs per second; a 409 `locked` (someone else holds that",
        "  lock right now) is an expected outcome under contention, counted apart (column *conflicts*). The",
        "  ceiling ratio of a lock row compares all HTTP requests answered (conflicts included).",
        "- *Go original*: the original Go server's published figure (zero simulated latency, 2 cores); its",
        "  lock figure counts a lock and an unlock as one request each, so it is halved into pairs/s here; its",
        "  1 KB and 10 KB figures do not say which mix and are set against the 1×1000 rows.",
        "",
        f"- Run: {meta['date']}; load average at start {meta['loadavg']}; took {meta.get('took', '?')}",
        f"- Machine: {meta['machine']}",
        f"- Versions: {meta['versions_text']}",
        f"- cdragon git `{meta['git']}`; data dirs on {meta['fstype']} ({meta['data_root']})",
        f"- Raw logs: `{meta['raw']}` (not committed); every row also in `bench/results.json`",
        "",
    ]
    thr = [r for r in rows if r.group != "watch"]
    if thr:
        L += ["| scenario | cdragon | Redis | etcd | ceiling (req/s) | ×Redis | ×etcd | ×ceiling | Go original | vs Go |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
        for row in thr:
            s = by_system(recs, row)
            cd, rd, ed, ce = s.get("cdragon"), s.get("redis"), s.get("etcd"), s.get("ceiling")

            def cell(r, key="ops_rps"):
                if r is None:
                    return "—"
                if "failed" in r:
                    return "**failed**"
                v = fmt_rate(r.get(key))
                if r.get("errors"):
                    v += " **(errors)**"
                if not r.get("alive", True):
                    v += " **(crashed)**"
                return v

            cdv = cd.get("ops_rps") if usable(cd) else None
            cereq = ce.get("rps") if usable(ce) else None
            cdreq = cd.get("rps") if usable(cd) else None
            vs_go = "—"
            if row.ref and cdv:
                vs_go = f"{cdv / row.ref:.2f}×"
            L.append(f"| {row.label} ({unit(row)}) | {cell(cd)} | {cell(rd)} | {cell(ed) if row.group != 'add' else 'n/a'} "
                     f"| {cell(ce, 'rps')} | {ratio(cdv, rd.get('ops_rps') if usable(rd) else None)} "
                     f"| {ratio(cdv, ed.get('ops_rps') if usable(ed) else None) if row.group != 'add' else 'n/a'} "
                     f"| {ratio(cdreq, cereq)} | {row.ref_text or '—'} | {vs_go} |")
        L += ["", "Latency (p50 / p99, ms), conflicts, errors, server peak RSS (VmHWM of that row's process), "
              "cdragon's average commit batch (writes answered ÷ records its write-ahead log gained during the "
              "measured run: one record, one fdatasync, per batch), and how busy the two pinned cores were "
              "(server core / load-generator core), and *other work*: the share of a core that went to neither the "
              "server nor the load generator process (other users of this shared machine, or kernel threads doing "
              "disk I/O; a measurement with ≥ 15 % is "
              "taken again, at most twice, and the cleanest kept):", "",
              "| scenario | system | ops/s | req/s | p50 | p99 | conflicts | errors | peak RSS | batch | cores busy | other work |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in thr:
            s = by_system(recs, row)
            for n in ("cdragon", "redis", "etcd", "ceiling"):
                r = s.get(n)
                if r is None:
                    continue
                if "failed" in r:
                    L.append(f"| {row.label} | {n} | **failed** | | | | | | | | | |")
                    continue
                conflicts = f"{int(r.get('locked', 0)):,}" if row.group == "lock" else "—"
                err = f"**{r['errors']:,}**" if r.get("errors") else "0"
                rss = f"{r['vmhwm_kb'] / 1024:,.0f} MiB" if r.get("vmhwm_kb") else "?"
                batch = f"{r['batch']:.1f}" if r.get("batch") else ("n/a" if n == "cdragon" else "—")
                runs = (" (" + ", ".join(fmt_rate(x.get("ops_rps")) for x in r["rounds"]) + ")"
                        if r.get("rounds") else "")
                L.append(f"| {row.label} | {n} | {fmt_rate(r.get('ops_rps'))}{runs} | {fmt_rate(r.get('rps'))} "
                         f"| {fmt_ms(r.get('p50_us'))} | {fmt_ms(r.get('p99_us'))} | {conflicts} | {err} | {rss} "
                         f"| {batch} | {r.get('server_core_busy_pct', 0):.0f} % / {r.get('client_core_busy_pct', 0):.0f} % "
                         f"| {r.get('interference_pct', 0):.0f} %{' (' + str(len(r['tries'])) + ' tries)' if r.get('tries') else ''} |")
        L += cpu_table(thr, recs)
    wrows = [r for r in rows if r.group == "watch"]
    if wrows:
        L += ["", "### Watch reaction", ""]
        if watch_recs:
            L += ["Through `bench/watch_reaction.py` (a one-thread raw-socket client, kernel receive timestamps): "
                  "cdragon, the fan-out ceiling `bench/fanout_ceiling.py` and Redis (`appendfsync always`, "
                  "`MULTI; SET; PUBLISH; EXEC` to `SUBSCRIBE`d clients) side by side, taking turns write by write. "
                  "Reaction = write sent → the last watcher's answer (median over the writes, max in brackets); "
                  "fan-out = the writer's (or first watcher's) answer → the last watcher's. etcd is not measured "
                  "here (watch_reaction.py has no etcd client; LIMITS.md quotes ~90 ms for 1,000 watchers).", "",
                  "| scenario | cdragon reaction | Redis reaction | ceiling reaction | ×Redis | ×ceiling | cdragon fan-out | ceiling fan-out | fan-out ×ceiling | errors |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for row in wrows:
                got = {r["system"]: r for r in watch_recs if r.get("scenario") == row.watch}
                cd, rd, ce = got.get("cdragon"), got.get("redis"), got.get("ceiling")

                def m(r, f="reaction_us"):
                    try:
                        return r[f]["median"]
                    except (TypeError, KeyError):
                        return None

                def c(r, f="reaction_us"):
                    if m(r, f) is None:
                        return "—"
                    return f"{fmt_ms(m(r, f))} ms [{fmt_ms(r[f]['max'])}]"

                errs = sum(int(r.get("n_errors", 0)) for r in got.values())
                L.append(f"| {row.label} | {c(cd)} | {c(rd)} | {c(ce)} | {ratio(m(cd), m(rd))} | {ratio(m(cd), m(ce))} "
                         f"| {c(cd, 'fanout_us')} | {c(ce, 'fanout_us')} | {ratio(m(cd, 'fanout_us'), m(ce, 'fanout_us'))} "
                         f"| {'**' + str(errs) + '**' if errs else 0} |")
            hwm = next((r.get("vmhwm_kb_all_watch_rows") for r in watch_recs if r.get("vmhwm_kb_all_watch_rows")), None)
            if hwm:
                L += ["", f"cdragon's peak RSS over all the watch rows (one process): {hwm / 1024:,.0f} MiB. "
                      "For a watch reaction lower is better, so a ratio below 1× is cdragon ahead."]
        else:
            L += ["Not measured in this run: the rows are left to `bench/watch.sh` (its section of this file)."]
    if notes:
        L += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    L += ["", END]
    return "\n".join(L)


def _us(pair) -> str:
    return f"{pair[0]:.1f} + {pair[1]:.1f}" if pair else "—"


def cpu_table(thr: list[Row], recs: list[dict]) -> list[str]:
    """Server CPU per answered request, user + kernel µs, from /proc over the measured run:
    cdragon by thread beside the ceiling's and Redis' whole process."""
    lines = ["", "Server CPU per answered request (µs of user + kernel time over the measured run, from "
             "/proc; conflicts count as requests): cdragon by thread (*loop*: the event loop, which also "
             "does the kernel's TCP work of every read and write; *writer*: the write-ahead log's "
             "appends and fdatasyncs; *checkpoint*: LMDB), beside the whole ceiling and Redis processes. "
             "A row is bounded by the sum where the server's core is near 100 % busy:", "",
             "| scenario | cdragon loop | writer | checkpoint | cdragon total | ceiling | Redis |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    seen = False
    for row in thr:
        s = by_system(recs, row)
        cd = (s.get("cdragon") or {}).get("cpu_us_per_req") or {}
        ce = (s.get("ceiling") or {}).get("cpu_us_per_req") or {}
        rd = (s.get("redis") or {}).get("cpu_us_per_req") or {}
        if not (cd or ce or rd):
            continue
        seen = True
        lines.append(f"| {row.label} | {_us(cd.get('main'))} | {_us(cd.get('cdragon-writer'))} "
                     f"| {_us(cd.get('cdragon-ckpt'))} | {_us(cd.get('total'))} | {_us(ce.get('total'))} "
                     f"| {_us(rd.get('total'))} |")
    return lines if seen else []


def findings(rows: list[Row], recs: list[dict], watch_recs: list[dict], meta: dict) -> tuple[list[str], bool]:
    """Notes on anything that makes a row not a clean measurement, and the Go targets missed."""
    notes, bad = [], False
    noisy: list[str] = []
    client_bound: list[str] = []
    for row in rows:
        s = by_system(recs, row)
        for n, r in s.items():
            if "failed" in r:
                bad = True
                notes.append(f"{row.label}, {n}: the measurement failed: {r['failed'][:300]}")
                continue
            if r.get("errors") or r.get("warmup_errors"):
                bad = True
                what = ", ".join(f"{int(r.get(k, 0)):,} {k}" for k in ("non2xx", "connect", "read", "write", "timeout")
                                 if r.get(k))
                if r.get("redis_error_replies"):
                    what += f", {r['redis_error_replies']:,} Redis error replies"
                notes.append(f"{row.label}, {n}: {r.get('errors', 0):,} errors in the measured run ({what or 'see log'}), "
                             f"{r.get('warmup_errors', 0):,} in the warm-up"
                             + (f"; first: `{r['first_bad']}`" if r.get("first_bad") else "")
                             + f"; log `{meta['raw']}/{r['tag']}.txt`.")
            if r.get("duration_us") and r["duration_us"] < 0.5e6 * meta["duration"]:
                notes.append(f"{row.label}, {n}: the measured run lasted only {r['duration_us'] / 1e6:.1f} s "
                             f"(asked {meta['duration']} s): a noisy figure.")
            if not r.get("alive", True):
                bad = True
                notes.append(f"{row.label}, {n}: the server died during the run; log `{meta['raw']}/{r['tag']}.log`.")
            if r.get("server_log_errors"):
                notes.append(f"{row.label}, {n}: the server logged `{r['server_log_errors'][0][:200]}`.")
            if r.get("exit_status") not in (0, None) and n == "cdragon":
                notes.append(f"{row.label}, cdragon exited with status {r.get('exit_status')} on SIGTERM.")
            if r.get("steal_pct", 0) >= 5:
                notes.append(f"{row.label}, {n}: the server's core lost {r['steal_pct']:.0f} % to other tenants (steal).")
            if (r.get("client_core_busy_pct", 0) >= 95 and r.get("server_core_busy_pct", 100) < 90
                    and not (n == "redis" and row.group == "lock")):
                client_bound.append(f"{row.label} {n} ({r['server_core_busy_pct']:.0f} % / "
                                    f"{r['client_core_busy_pct']:.0f} %)")
            if r.get("interference_pct", 0) >= 10:
                noisy.append(f"{row.label} {n} {r['interference_pct']:.0f} %"
                             + (f" (best of {len(r['tries'])} tries)" if r.get("tries") else ""))
            if n == "redis" and row.group == "lock" and r.get("client_core_busy_pct", 0) >= 95:
                notes.append(f"{row.label}, Redis: the lock client's core was {r['client_core_busy_pct']:.0f} % busy "
                             f"(Redis' own core {r.get('server_core_busy_pct', 0):.0f} %): the (Python) client bounds "
                             "this row, Redis could do somewhat more.")
    if client_bound:
        notes.append("Bounded by the load generator too (its core ≥ 95 % busy while the server's was < 90 %): "
                     + "; ".join(client_bound) + ". These systems could do more than shown; for the ceiling that "
                     "flatters cdragon's ratio to it, for Redis it flatters cdragon's ratio to Redis.")
    if noisy:
        notes.append("Work that was neither the server's nor the load generator's process (other users of this "
                     "shared machine, or kernel threads such as the disk's journal and writeback) took ≥ 10 % of a "
                     "core during: " + "; ".join(noisy) + ". Those figures may read low.")
    # targets against the Go original
    for row in rows:
        if not row.ref:
            continue
        cd = by_system(recs, row).get("cdragon")
        if not usable(cd):
            continue
        v = cd["ops_rps"]
        if v < row.ref:
            notes.append(f"Misses the Go original on {row.label}: {fmt_rate(v)} vs {row.ref_text} "
                         f"({100 * (1 - v / row.ref):.0f} % short).")
    for r in watch_recs:
        if r.get("n_errors"):
            bad = True
            notes.append(f"watch {r.get('scenario')} {r.get('system')}: {r['n_errors']} errors, e.g. {r.get('errors', [])[:2]}")
    return notes, bad


def write_results_md(section: str) -> Path:
    p = BENCH / "RESULTS.md"
    old = p.read_text() if p.exists() else ""
    if BEGIN in old and END in old and old.index(BEGIN) < old.index(END):
        new = old[:old.index(BEGIN)] + section + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + ("\n\n" if old.strip() else "") + section + "\n"
    tmp = p.with_suffix(".md.suite-tmp")
    tmp.write_text(new)
    tmp.replace(p)
    return p


def results_json(data: dict) -> str:
    """`data` (a dict of lists and objects) as JSON with one line per top-level field and
    one line per list entry: compact, yet diffable row by row."""
    parts = []
    for k, v in data.items():
        if isinstance(v, list) and v:
            items = ",\n".join(json.dumps(x, separators=(",", ":")) for x in v)
            parts.append(f"{json.dumps(k)}:[\n{items}\n]")
        else:
            parts.append(f"{json.dumps(k)}:{json.dumps(v, separators=(',', ':'))}")
    return "{\n" + ",\n".join(parts) + "\n}\n"
