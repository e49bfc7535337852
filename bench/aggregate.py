#!/usr/bin/env python3
"""Medians and ratios from pushi-bench JSON files, as a Markdown table.

Usage: aggregate.py RESULTS_DIR [--write docs/benchmarks.md]

RESULTS_DIR holds SERVER.SCENARIO.ROUND.json files written by bench/compare.sh. The table
gives, per scenario metric, the median over rounds for each server and the ratio pushi ÷ peer
(so > 1 is better for pushi where higher is better; the "better" column says which way).
With --write, the table replaces the text between the compare markers in that file.
"""

import json
import os
import statistics
import sys

BEGIN = "<!-- compare:begin -->"
END = "<!-- compare:end -->"

# scenario file name -> [(label, path in results, higher is better, target note)]
METRICS = {
    "idle": [
        ("server memory per connection (KiB)", "server_kib_per_conn", False, "≤ 4 KiB"),
        ("connects/s (open + subscribe)", "connects_per_sec", True, ""),
    ],
    "fanout": [
        ("deliveries/s at best step with p99 < 100 ms", "best_deliveries_per_sec", True,
         "≥ 1.5 × Sockudo, ≥ 20 × original"),
        ("publish rate of that step (msg/s)", "best_rate", True, ""),
        ("p99 of that step (ms)", "best_p99_ms", False, "< 100"),
        ("peak deliveries/s over all steps (any latency)", "peak_deliveries_per_sec", True,
         "original has no step under 100 ms: compare with its peak"),
    ],
    "fanout-burst": [
        ("burst deliveries/s (900 subs × 100 publishes)", "burst_deliveries_per_sec", True, ""),
        ("burst p99 (ms)", "burst_p99_ms", False, ""),
    ],
    "trigger": [
        ("HTTP publishes/s (16 keep-alive conns)", "requests_per_sec", True, "≥ 1.5 × Sockudo"),
        ("HTTP round trip p99 (ms)", "http.p99_ms", False, ""),
        ("server CPU µs per publish", "server_cpu_us_per_request", False, ""),
    ],
    "many-channels": [
        ("deliveries/s (10k channels, random publishes)", "deliveries_per_sec", True, ""),
        ("delivery p99 (ms)", "latency.p99_ms", False, ""),
    ],
    "churn": [
        ("connect/subscribe/close cycles/s", "cycles_per_sec", True, ""),
        ("RSS growth after warm-up (KiB)", "growth_after_warmup_kib", False, "no growth"),
    ],
    "persist-sqlite": [
        ("persisted events/s, SQLite", "requests_per_sec", True, ""),
    ],
    "persist-postgres": [
        ("persisted events/s, PostgreSQL", "requests_per_sec", True, ""),
    ],
}

SERVERS = ["pushi", "baseline", "sockudo", "original"]


def get(doc, path):
    if path == "peak_deliveries_per_sec":
        steps = doc.get("steps") or []
        return max((st.get("deliveries_per_sec", 0) for st in steps), default=None)
    for part in path.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc


def load(results_dir):
    runs = {}  # (server, scenario) -> list of docs
    for name in sorted(os.listdir(results_dir)):
        if not name.endswith(".json"):
            continue
        parts = name[: -len(".json")].split(".")
        if len(parts) != 3:
            continue
        server, scenario, _round = parts
        with open(os.path.join(results_dir, name)) as f:
            try:
                doc = json.load(f)
            except ValueError:
                continue
        runs.setdefault((server, scenario), []).append(doc)
    return runs


def fmt(v):
    if v is None:
        return "—"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}"


def table(runs):
    servers = [s for s in SERVERS if any(k[0] == s for k in runs)]
    peers = [s for s in servers if s != "pushi"]
    head = ["scenario", "metric"] + servers + [f"pushi ÷ {p}" for p in peers] + ["better", "target"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes = []
    for scenario, metrics in METRICS.items():
        if not any((s, scenario) in runs for s in servers):
            continue
        for label, path, higher, target in metrics:
            med = {}
            for s in servers:
                vals = [get(d["results"], path) for d in runs.get((s, scenario), [])]
                vals = [v for v in vals if isinstance(v, (int, float))]
                if path == "best_deliveries_per_sec":
                    vals = [v for v in vals if v > 0]  # 0: no step met the target
                med[s] = statistics.median(vals) if vals else None
            if all(v is None for v in med.values()):
                continue
            row = [scenario, label] + [fmt(med[s]) for s in servers]
            row += [ratio(med["pushi"], med[p]) if "pushi" in med else "—" for p in peers]
            row += ["higher" if higher else "lower", target]
            lines.append("| " + " | ".join(row) + " |")
        for s in servers:
            docs = runs.get((s, scenario), [])
            bad = [d for d in docs if not d.get("ok")]
            if docs:
                n = len(docs)
                if bad:
                    first = (bad[0].get("problems") or ["?"])[0]
                    notes.append(f"- {scenario} on {s}: {len(bad)} of {n} runs reported delivery "
                                 f"problems (e.g. {first})")
    counts = {s: max((len(v) for k, v in runs.items() if k[0] == s), default=0) for s in servers}
    rounds = ", ".join(f"{s} {n}" for s, n in counts.items())
    out = ["Medians over rounds (" + rounds + "); ratios are pushi ÷ peer.", ""]
    out += lines
    if notes:
        out += ["", "Runs with delivery problems (lost, duplicated or reordered messages, failed "
                "publishes or connections):", ""] + notes
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    results_dir = sys.argv[1]
    text = table(load(results_dir))
    text = f"Results: `{results_dir}`\n\n" + text
    print(text)
    if "--write" in sys.argv:
        path = sys.argv[sys.argv.index("--write") + 1]
        doc = open(path).read() if os.path.exists(path) else f"{BEGIN}\n{END}\n"
        if BEGIN not in doc or END not in doc:
            doc += f"\n{BEGIN}\n{END}\n"
        a = doc.index(BEGIN) + len(BEGIN)
        b = doc.index(END)
        doc = doc[:a] + "\n" + text + doc[b:]
        with open(path, "w") as f:
            f.write(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
