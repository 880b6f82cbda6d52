#!/usr/bin/env python3
"""report.py RESULTS_DIR: turn the runs recorded by benches/compare.sh into one
table (printed, and written as Markdown to RESULTS_DIR/results.md).

RESULTS_DIR holds header.txt, manifest.json, links.tsv, iperf.tsv and runs/*/
(meta, client.stdout, client.stderr, client.time, server.rss)."""
import json
import os
import re
import statistics
import sys

MIB = 1 << 20


def read(path, default=""):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def parse_meta(text):
    meta = {}
    for line in text.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            meta[k] = v
    return meta


def time_line(text):
    """GNU time -o output with -f '%e %U %S %M' (an optional 'Command exited/terminated
    ...' line before it), or the same line written from /proc for the pareco server.
    Returns (cpu seconds = user + system, peak RSS KiB), None where unknown."""
    for line in reversed(text.strip().splitlines()):
        f = line.split()
        try:
            vals = [float(x) for x in f]
        except ValueError:
            continue
        if len(vals) == 4:
            return vals[1] + vals[2], int(vals[3])
        if len(vals) == 3:
            return vals[1] + vals[2], None
    return None, None


def rsync_wire(stdout):
    sent = re.search(r"Total bytes sent:\s*([\d,.]+)", stdout)
    recv = re.search(r"Total bytes received:\s*([\d,.]+)", stdout)
    if not (sent and recv):
        return None
    return int(sent.group(1).replace(",", "").replace(".", "")) + int(
        recv.group(1).replace(",", "").replace(".", "")
    )


def pareco_json(stdout):
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                pass
    return None


def cache_summary(stderr):
    """(answered without reading, read) from pareco -v's last line, or None."""
    m = None
    for m in re.finditer(r"digest cache: (\d+) lookup\(s\) answered without reading, (\d+) read", stderr):
        pass
    return (int(m.group(1)), int(m.group(2))) if m else None


def intmeta(meta, key):
    try:
        return int(meta[key])
    except (KeyError, ValueError):
        return None


def load_runs(root):
    runs = []
    rdir = os.path.join(root, "runs")
    for name in sorted(os.listdir(rdir)) if os.path.isdir(rdir) else []:
        d = os.path.join(rdir, name)
        meta = parse_meta(read(os.path.join(d, "meta")))
        if "seconds" not in meta:
            continue
        out = read(os.path.join(d, "client.stdout"))
        r = {
            "dir": d,
            "order": int(meta.get("order", 0)),
            "scenario": meta["scenario"],
            "link": meta["link"],
            "tool": meta["tool"],
            "variant": meta["variant"],
            "seconds": float(meta["seconds"]),
            "exit": int(meta.get("exit", "0")),
            "source_bytes": int(meta["source_bytes"]),
            "verify": meta.get("verify", "?"),
            "server_alive": meta.get("server_alive", "1"),
            "load1": float(meta["load1"]) if meta.get("load1") else None,
            "stderr": read(os.path.join(d, "client.stderr")),
            "wire": None,
            "json": None,
            # bytes read, /proc/PID/io: rchar (all reads), read_bytes (from the disk)
            "client_rchar": intmeta(meta, "client_rchar"),
            "client_disk": intmeta(meta, "client_read_bytes"),
            "server_rchar": intmeta(meta, "server_rchar"),
            "server_disk": intmeta(meta, "server_read_bytes"),
            "page_cache": meta.get("page_cache", "warm"),
            "warmup": meta.get("warmup"),
        }
        r["cache"] = cache_summary(r["stderr"])
        if r["tool"] == "rsync":
            r["wire"] = rsync_wire(out)
        else:
            j = pareco_json(out)
            r["json"] = j
            if j is not None:
                r["wire"] = j.get("wire_bytes")
        r["client_cpu"], r["client_rss"] = time_line(read(os.path.join(d, "client.time")))
        r["server_cpu"], r["server_rss"] = time_line(read(os.path.join(d, "server.rss")))
        r["ok"] = r["exit"] == 0 and r["verify"] == "ok"
        runs.append(r)
    runs.sort(key=lambda r: r["order"])
    return runs


def fmt(x, spec):
    return "—" if x is None else format(x, spec)


SCEN_NAMES = {
    "1": "1 cold copy, upload",
    "2": "2 cold copy, small files, upload",
    "3": "3 re-sync, nothing changed",
    "4": "4 1 % of pages changed",
    "5": "5 cold copy, download",
    "6": "6 cold copy, TLS, upload",
    "7": "7 re-sync of 2, nothing changed",
    "8a": "8a cold copy, many small files",
    "8b": "8b re-sync of 8a, nothing changed",
    "9": "9 database, 1 % of pages in 2 files changed",
    "10": "10 cold copy as 1: cost of the cache",
}

# The row each row is compared with in the ratio column (default: "rsync"):
# without a cache pareco reads every file like rsync --checksum; the cache's
# own cost is pareco against pareco --no-cache.
RATIO_REF = {
    ("7", "pareco --no-cache"): "rsync --checksum",
    ("8b", "pareco --no-cache"): "rsync --checksum",
    ("10", "pareco"): "pareco --no-cache",
}


def ratio_ref(scen, variant):
    if variant.startswith("rsync") or (scen, variant) == ("10", "pareco --no-cache"):
        return None
    return RATIO_REF.get((scen, variant), "rsync")


def median_of(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def mb(x):
    return None if x is None else x / 1e6


def read_cell(disk, rchar):
    """'disk / all' in MB."""
    if disk is None and rchar is None:
        return "—"
    d, a = mb(disk), mb(rchar)
    return f"{fmt(d, '.1f')} / {fmt(a, '.1f')}"


def main():
    root = sys.argv[1]
    manifest = json.loads(read(os.path.join(root, "manifest.json"), "{}") or "{}")
    links = {}
    for line in read(os.path.join(root, "links.tsv")).splitlines():
        parts = line.split("\t")
        if len(parts) >= 2:
            links[parts[0]] = parts[1]
    iperf = {}
    for line in read(os.path.join(root, "iperf.tsv")).splitlines():
        parts = line.split("\t")
        if len(parts) >= 3:
            iperf[parts[0]] = (float(parts[1]) if parts[1] else None, float(parts[2]) if parts[2] else None)
    runs = load_runs(root)

    groups = {}
    for r in runs:
        groups.setdefault((r["scenario"], r["link"], r["variant"]), []).append(r)

    # medians per group over successful runs
    stats = {}
    for key, rs in groups.items():
        good = [r for r in rs if r["ok"]]
        med = statistics.median([r["seconds"] for r in good]) if good else None
        wires = [r["wire"] for r in good if r["wire"] is not None]
        stats[key] = {
            "runs": rs,
            "good": good,
            "median": med,
            "wire": statistics.median(wires) if wires else None,
            "crss": max([r["client_rss"] for r in rs if r["client_rss"]], default=None),
            "srss": max([r["server_rss"] for r in rs if r["server_rss"]], default=None),
            "ccpu": statistics.median([r["client_cpu"] for r in good if r["client_cpu"] is not None])
            if any(r["client_cpu"] is not None for r in good) else None,
            "scpu": statistics.median([r["server_cpu"] for r in good if r["server_cpu"] is not None])
            if any(r["server_cpu"] is not None for r in good) else None,
            "c_rchar": median_of([r["client_rchar"] for r in good]),
            "c_disk": median_of([r["client_disk"] for r in good]),
            "s_rchar": median_of([r["server_rchar"] for r in good]),
            "s_disk": median_of([r["server_disk"] for r in good]),
        }

    header = [
        "scenario", "link", "tool", "runs", "median s", "MB/s", "wire MB",
        "client RSS MiB", "server RSS MiB", "ratio", "ratio to", "% of iperf3 -P8",
        "client CPU s", "server CPU s", "client read MB disk / all", "server read MB disk / all", "notes",
    ]
    rows = []
    failures = []
    for key, st in stats.items():
        scen, link, variant = key
        rs, med = st["runs"], st["median"]
        src = rs[0]["source_bytes"]
        mbps = src / med / 1e6 if med else None
        ref = ratio_ref(scen, variant)
        ref_key = (scen, link, ref)
        ratio = None
        if ref and ref_key in stats and med and stats[ref_key]["median"]:
            ratio = med / stats[ref_key]["median"]
        elif ref and ref_key not in stats:
            ref = None
        pct = None
        if link in iperf and iperf[link][1] and mbps and scen in ("1", "2", "5", "6", "8a", "10"):
            pct = mbps * 8 / iperf[link][1] * 100
        notes = []
        if scen == "4" and st["wire"] is not None and manifest.get("delta_changed_bytes_4k"):
            if variant == "pareco -c 1MiB":
                notes.append(f"wire = {st['wire'] / manifest['delta_changed_bytes_1m']:.2f}× changed 1 MiB chunks")
            notes.append(f"wire = {st['wire'] / manifest['delta_changed_bytes_4k']:.2f}× changed 4 KiB pages")
        if scen == "6" and variant == "rsync":
            notes.append("plain TCP: the rsync daemon has no TLS")
        if scen == "9" and manifest.get("db_changed_file_bytes"):
            changed = manifest["db_changed_file_bytes"]
            if st["c_disk"] is not None:
                notes.append(f"client (source) read from disk {st['c_disk'] / changed:.2f}× the changed files' bytes")
            if st["s_disk"] is not None:
                notes.append(f"server (destination) {st['s_disk'] / changed:.2f}×")
        if scen == "10" and len(st["good"]) > 1:
            notes.append("runs: " + ", ".join(f"{r['seconds']:.3f}" for r in st["good"]) + " s")
        caches = [r["cache"] for r in st["good"] if r["cache"]]
        if caches:
            hits = median_of([c[0] for c in caches])
            reads = median_of([c[1] for c in caches])
            notes.append(f"client cache: {hits:.0f} answered without reading, {reads:.0f} read")
        warm_bad = [r for r in rs if r["warmup"] and not r["warmup"].startswith("exit 0,")]
        if warm_bad:
            notes.append(f"warm-up FAILED in {len(warm_bad)} run(s)")
        dead = sum(1 for r in rs if r["server_alive"] == "0")
        if dead:
            notes.append(f"server process gone at the end of {dead} run(s)")
        nbad = len(rs) - len(st["good"])
        if nbad:
            exits = sorted({r["exit"] for r in rs if not r["ok"]})
            verifies = sorted({r["verify"][:60] for r in rs if r["exit"] == 0 and r["verify"] != "ok"})
            what = f"{nbad}/{len(rs)} runs FAILED (exit {','.join(map(str, exits))})"
            if verifies:
                what += " verify: " + " | ".join(verifies)
            notes.append(what)
            for r in rs:
                if not r["ok"]:
                    failures.append(r)
        if variant.startswith("pareco"):
            jsons = [r["json"] for r in st["good"] if r["json"] and r["json"].get("chunks_transferred")]
            if jsons:
                p50 = statistics.median(j["chunk_latency_us"]["p50"] for j in jsons)
                notes.append(f"chunk p50 {p50 / 1000:.1f} ms")
        rows.append([
            SCEN_NAMES.get(scen, scen), link, variant, f"{len(st['good'])}/{len(rs)}",
            fmt(med, ".2f" if med is None or med >= 1 else ".3f"), fmt(mbps, ".1f"),
            fmt(st["wire"] / 1e6 if st["wire"] is not None else None, ".1f"),
            fmt(st["crss"] / 1024 if st["crss"] else None, ".1f"),
            fmt(st["srss"] / 1024 if st["srss"] else None, ".1f"),
            fmt(ratio, ".2f"), ref or "—", fmt(pct, ".0f"), fmt(st["ccpu"], ".2f"), fmt(st["scpu"], ".2f"),
            read_cell(st["c_disk"], st["c_rchar"]), read_cell(st["s_disk"], st["s_rchar"]),
            "; ".join(notes),
        ])

    # plain text
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
    def line(cells):
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    text = [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]

    md = []
    md.append(read(os.path.join(root, "header.txt")).rstrip())
    loads = [r["load1"] for r in runs if r["load1"] is not None]
    if loads:
        md.append(f"- 1-minute load average when each run started: median {statistics.median(loads):.2f}, "
                  f"min {min(loads):.2f}, max {max(loads):.2f}")
    md.append("")
    md.append("| " + " | ".join(header) + " |")
    md.append("|" + "|".join("---" if i < 3 or i == len(header) - 1 else "---:" for i in range(len(header))) + "|")
    for r in rows:
        md.append("| " + " | ".join(str(c) for c in r) + " |")
    md.append("")
    if links:
        md.append("Links:")
        md.append("")
        for name, desc in links.items():
            md.append(f"- `{name}`: {desc}")
        md.append("")
    if iperf:
        md.append("| link | iperf3 -P 1 Mbit/s | iperf3 -P 8 Mbit/s |")
        md.append("|---|---:|---:|")
        for name, (p1, p8) in iperf.items():
            md.append(f"| {name} | {fmt(p1, '.0f')} | {fmt(p8, '.0f')} |")
        md.append("")
    if manifest and "big_files" in manifest:
        md.append(
            "Data: scenario 1/3/5/6 {bf} files, {bb:.0f} MiB in all; scenario 2 {sf} files of {ss} bytes in {sd} "
            "directories ({sb:.1f} MiB); scenario 4 one file of {db:.0f} MiB with {cp} of its {dp} 4 KiB pages "
            "rewritten = {c4:.2f} MB of changed 4 KiB chunks; those pages touch {c1n} of the 1 MiB chunks = "
            "{c1:.1f} MB of changed 1 MiB chunks.".format(
                bf=manifest["big_files"], bb=manifest["big_bytes"] / MIB, sf=manifest["small_files"],
                ss=manifest["params"]["small_size"], sd=manifest["small_dirs"], sb=manifest["small_bytes"] / MIB,
                db=manifest["delta_bytes"] / MIB, cp=manifest["delta_changed_pages"], dp=manifest["delta_pages"],
                c4=manifest["delta_changed_bytes_4k"] / 1e6, c1n=manifest["delta_changed_chunks_1m"],
                c1=manifest["delta_changed_bytes_1m"] / 1e6,
            )
        )
        md.append("")
    if manifest.get("many_files"):
        p = manifest["params"] or {}
        md.append(
            "Scenario 8: {n} files of {lo}-{hi} bytes (uniformly random sizes, fixed seed) in {d} directories, "
            "{b:.1f} MiB. Scenario 9: {f} files × {s:.0f} MiB = {t:.0f} MiB; {c} of them ({names}) have {pct:g} % "
            "of their 4 KiB pages rewritten in place ({cp} pages, {c4:.2f} MB), so the changed files hold "
            "{cb:.0f} MiB; those pages touch {c1n} of their 1 MiB chunks.".format(
                n=manifest["many_files"], lo=p.get("many_min", "?"), hi=p.get("many_max", "?"),
                d=manifest["many_dirs"], b=manifest["many_bytes"] / MIB,
                f=manifest["db_files"], s=manifest["db_file_size"] / MIB, t=manifest["db_bytes"] / MIB,
                c=len(manifest["db_changed_files"]), names=", ".join(manifest["db_changed_files"]),
                pct=p.get("db_percent", 0), cp=manifest["db_changed_pages"],
                c4=manifest["db_changed_bytes_4k"] / 1e6, cb=manifest["db_changed_file_bytes"] / MIB,
                c1n=manifest["db_changed_chunks_1m"],
            )
        )
        md.append("")
    if failures:
        md.append("Failed runs:")
        md.append("")
        for r in failures:
            tail = "\n".join(r["stderr"].strip().splitlines()[-8:])
            md.append(f"- {SCEN_NAMES.get(r['scenario'], r['scenario'])} / {r['link']} / {r['variant']}: "
                      f"exit {r['exit']}, verify {r['verify']} ({os.path.basename(r['dir'])})")
            if tail:
                md.append("")
                md.append("  ```")
                md.extend("  " + l for l in tail.splitlines())
                md.append("  ```")
        md.append("")
    with open(os.path.join(root, "results.md"), "w") as f:
        f.write("\n".join(md) + "\n")

    if loads:
        print(f"1-minute load average when each run started: median {statistics.median(loads):.2f}, "
              f"min {min(loads):.2f}, max {max(loads):.2f}")
        print()
    print("\n".join(text))
    print()
    for name, desc in links.items():
        print(f"link {name}: {desc.replace('`', '')}")
    for name, (p1, p8) in iperf.items():
        print(f"iperf3 {name}: -P 1 {fmt(p1, '.0f')} Mbit/s, -P 8 {fmt(p8, '.0f')} Mbit/s")
    if failures:
        print()
        print("FAILED RUNS:")
        for r in failures:
            print(f"  {r['scenario']} {r['link']} {r['variant']}: exit {r['exit']}, verify {r['verify']}  ({r['dir']})")
            for l in r["stderr"].strip().splitlines()[-8:]:
                print("    | " + l)


if __name__ == "__main__":
    main()
