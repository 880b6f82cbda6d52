#!/usr/bin/env python3
"""Deterministic, incompressible test data for benches/compare.sh.

Bytes come from AES-128-CTR keystreams (openssl enc over /dev/zero) whose keys
are derived from a seed and a label, so the same arguments always produce the
same bytes, and nothing compresses them. Writes OUT/{big,small,delta/old,delta/new}
(scenarios 1-7, 10), OUT/many (scenario 8: many small files of random sizes),
OUT/db/{old,new,changes.json} (scenario 9: a "database" of equal files, a few of
which have 1 % of their pages rewritten) and OUT/manifest.json (sizes and the
bytes that scenarios 4 and 9 really change). Each part is made again only when
its own parameters changed.
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess

GEN_VERSION = 1
# the parameters each part of the data depends on (a part whose parameters are
# unchanged is reused as it is)
PARTS = {
    "big": ("seed", "big_files", "big_size"),
    "small": ("seed", "small_files", "small_dirs", "small_size"),
    "delta": ("seed", "delta_size", "delta_percent"),
    "many": ("seed", "many_files", "many_dirs", "many_min", "many_max"),
    "db": ("seed", "db_files", "db_size", "db_changed", "db_percent"),
}
PAGE = 4096
MIB = 1 << 20
# fixed, distinct mtimes so re-runs are identical and rsync's quick check sees
# the old and the new version of the delta file as different
MTIME_SRC = 1_700_000_000
MTIME_OLD = 1_690_000_000


class Stream:
    """A keystream of AES-128-CTR(sha256(seed:label)[:16], iv=0) over zeros."""

    def __init__(self, seed, label):
        key = hashlib.sha256(f"{seed}:{label}".encode()).hexdigest()[:32]
        self.proc = subprocess.Popen(
            ["openssl", "enc", "-aes-128-ctr", "-nosalt", "-K", key, "-iv", "0" * 32],
            stdin=open("/dev/zero", "rb"),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )

    def read(self, n):
        out = bytearray()
        while len(out) < n:
            b = self.proc.stdout.read(min(n - len(out), 4 * MIB))
            if not b:
                raise RuntimeError("openssl keystream ended early")
            out += b
        return bytes(out)

    def close(self):
        self.proc.kill()
        self.proc.wait()


def write_stream(path, stream, size):
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 4 * MIB)
            f.write(stream.read(n))
            left -= n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--big-files", type=int, default=8)
    ap.add_argument("--big-size", type=int, default=128 * MIB, help="bytes per big file")
    ap.add_argument("--small-files", type=int, default=20000)
    ap.add_argument("--small-dirs", type=int, default=200)
    ap.add_argument("--small-size", type=int, default=4096)
    ap.add_argument("--delta-size", type=int, default=1024 * MIB)
    ap.add_argument("--delta-percent", type=float, default=1.0, help="percent of 4 KiB pages rewritten")
    ap.add_argument("--many-files", type=int, default=100000)
    ap.add_argument("--many-dirs", type=int, default=1000)
    ap.add_argument("--many-min", type=int, default=100, help="smallest size of a file of the many-files tree")
    ap.add_argument("--many-max", type=int, default=4096, help="largest size of a file of the many-files tree")
    ap.add_argument("--db-files", type=int, default=16)
    ap.add_argument("--db-size", type=int, default=64 * MIB, help="bytes per database file")
    ap.add_argument("--db-changed", type=int, default=2, help="database files with pages rewritten")
    ap.add_argument("--db-percent", type=float, default=1.0, help="percent of the 4 KiB pages rewritten in each")
    a = ap.parse_args()
    params = {k: v for k, v in vars(a).items() if k != "out"}
    params["gen_version"] = GEN_VERSION

    out = a.out
    manifest_path = os.path.join(out, "manifest.json")
    old = {}
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            old = json.load(f)
        if old.get("params") == params:
            print(f"data in {out} is up to date (reused)")
            return
    old_params = old.get("params") or {}
    # manifests written before the data had parts: big, small and delta only
    old_parts = old["parts"] if "parts" in old else {
        name: {k: old_params[k] for k in keys}
        for name, keys in PARTS.items()
        if old_params.get("gen_version") == GEN_VERSION and all(k in old_params for k in keys)
    }
    # the manifest always describes what is on disk: a part being made is not
    # in it, and "params" is set only once every part is in place
    manifest = {k: v for k, v in old.items() if k not in ("params", "parts")}
    manifest["params"] = None
    manifest["parts"] = dict(old_parts)
    os.makedirs(out, exist_ok=True)

    def save():
        with open(manifest_path + ".new", "w") as f:
            json.dump(manifest, f, indent=1)
        os.replace(manifest_path + ".new", manifest_path)

    makers = {"big": make_big, "small": make_small, "delta": make_delta, "many": make_many, "db": make_db}
    for name, keys in PARTS.items():
        want = {k: params[k] for k in keys}
        if manifest["parts"].get(name) == want and os.path.isdir(os.path.join(out, name)):
            print(f"{name}: up to date (reused)")
            continue
        manifest["parts"].pop(name, None)
        save()
        if os.path.exists(os.path.join(out, name)):
            shutil.rmtree(os.path.join(out, name))
        manifest.update(makers[name](a, out))
        manifest["parts"][name] = want
        save()
        print(f"{name}: generated")
    manifest["params"] = params
    save()
    print(f"data in {out}: {json.dumps({k: v for k, v in manifest.items() if k not in ('params', 'parts')})}")


def make_big(a, out):
    """Scenarios 1, 3, 5, 6, 10: big files."""
    big = os.path.join(out, "big")
    os.makedirs(big)
    for i in range(a.big_files):
        s = Stream(a.seed, f"big/{i}")
        p = os.path.join(big, f"file{i}.bin")
        write_stream(p, s, a.big_size)
        s.close()
        os.utime(p, (MTIME_SRC, MTIME_SRC))
    os.utime(big, (MTIME_SRC, MTIME_SRC))
    return {"big_bytes": a.big_files * a.big_size, "big_files": a.big_files}


def make_small(a, out):
    """Scenarios 2, 7: small files, spread evenly over the directories."""
    small = os.path.join(out, "small")
    os.makedirs(small)
    s = Stream(a.seed, "small")
    per_dir = -(-a.small_files // a.small_dirs)
    made = 0
    for d in range(a.small_dirs):
        dp = os.path.join(small, f"dir{d:03d}")
        os.makedirs(dp)
        for j in range(per_dir):
            if made == a.small_files:
                break
            p = os.path.join(dp, f"f{j:04d}.bin")
            with open(p, "wb") as f:
                f.write(s.read(a.small_size))
            os.utime(p, (MTIME_SRC, MTIME_SRC))
            made += 1
        os.utime(dp, (MTIME_SRC, MTIME_SRC))
    s.close()
    os.utime(small, (MTIME_SRC, MTIME_SRC))
    return {"small_bytes": made * a.small_size, "small_files": made, "small_dirs": a.small_dirs}


def make_delta(a, out):
    """Scenario 4: one big file, old version and new version with 1 % of its pages rewritten."""
    old_dir = os.path.join(out, "delta", "old")
    new_dir = os.path.join(out, "delta", "new")
    os.makedirs(old_dir)
    os.makedirs(new_dir)
    old = os.path.join(old_dir, "file.bin")
    new = os.path.join(new_dir, "file.bin")
    s = Stream(a.seed, "delta/old")
    write_stream(old, s, a.delta_size)
    s.close()
    shutil.copyfile(old, new)
    pages = a.delta_size // PAGE
    k = round(pages * a.delta_percent / 100)
    chosen = sorted(random.Random(a.seed).sample(range(pages), k))
    s = Stream(a.seed, "delta/pages")
    fd = os.open(new, os.O_WRONLY)
    for p in chosen:
        os.pwrite(fd, s.read(PAGE), p * PAGE)
    os.close(fd)
    s.close()
    os.utime(old, (MTIME_OLD, MTIME_OLD))
    os.utime(new, (MTIME_SRC, MTIME_SRC))
    for d in (old_dir, new_dir):
        os.utime(d, (MTIME_SRC, MTIME_SRC))

    def touched(chunk):
        return len({p * PAGE // chunk for p in chosen})

    return {
        "delta_bytes": a.delta_size,
        "delta_pages": pages,
        "delta_changed_pages": k,
        # bytes of the chunks that really changed, per chunk size
        "delta_changed_bytes_4k": k * PAGE,
        "delta_changed_chunks_1m": touched(MIB),
        "delta_changed_bytes_1m": min(touched(MIB) * MIB, a.delta_size),
    }


def make_many(a, out):
    """Scenario 8: many small files of random sizes (many_min..many_max bytes,
    uniform, fixed seed), spread evenly over the directories."""
    many = os.path.join(out, "many")
    os.makedirs(many)
    s = Stream(a.seed, "many")
    sizes = random.Random(f"{a.seed}:many").choices(range(a.many_min, a.many_max + 1), k=a.many_files)
    per_dir = -(-a.many_files // a.many_dirs)
    made = total = 0
    for d in range(a.many_dirs):
        dp = os.path.join(many, f"d{d:04d}")
        os.makedirs(dp)
        for j in range(per_dir):
            if made == a.many_files:
                break
            p = os.path.join(dp, f"f{j:04d}")
            with open(p, "wb") as f:
                f.write(s.read(sizes[made]))
            os.utime(p, (MTIME_SRC, MTIME_SRC))
            total += sizes[made]
            made += 1
        os.utime(dp, (MTIME_SRC, MTIME_SRC))
    s.close()
    os.utime(many, (MTIME_SRC, MTIME_SRC))
    return {"many_bytes": total, "many_files": made, "many_dirs": a.many_dirs}


def make_db(a, out):
    """Scenario 9: db/old holds db_files files of db_size bytes (the state both
    sides had at the last sync); db_changed of them (picked with a fixed seed)
    have db_percent of their 4 KiB pages rewritten in place: db/new holds those
    files in their new version, db/changes.json the pages per file, which
    benches/compare/dbpatch.py writes into a copy of db/old."""
    old_dir = os.path.join(out, "db", "old")
    new_dir = os.path.join(out, "db", "new")
    os.makedirs(old_dir)
    os.makedirs(new_dir)
    names = [f"base{i:02d}.dat" for i in range(a.db_files)]
    for name in names:
        s = Stream(a.seed, f"db/old/{name}")
        write_stream(os.path.join(old_dir, name), s, a.db_size)
        s.close()
        os.utime(os.path.join(old_dir, name), (MTIME_OLD, MTIME_OLD))
    rng = random.Random(f"{a.seed}:db")
    changed = sorted(rng.sample(names, a.db_changed))
    pages = a.db_size // PAGE
    k = round(pages * a.db_percent / 100)
    changes = {}
    for name in changed:
        chosen = sorted(rng.sample(range(pages), k))
        changes[name] = chosen
        new = os.path.join(new_dir, name)
        shutil.copyfile(os.path.join(old_dir, name), new)
        s = Stream(a.seed, f"db/pages/{name}")
        fd = os.open(new, os.O_WRONLY)
        for p in chosen:
            os.pwrite(fd, s.read(PAGE), p * PAGE)
        os.close(fd)
        s.close()
        os.utime(new, (MTIME_SRC, MTIME_SRC))
    with open(os.path.join(out, "db", "changes.json"), "w") as f:
        json.dump({"mtime": MTIME_SRC, "page": PAGE, "pages": changes}, f)
    for d in (old_dir, new_dir):
        os.utime(d, (MTIME_OLD, MTIME_OLD))

    def touched(chunk):
        return sum(len({p * PAGE // chunk for p in chosen}) for chosen in changes.values())

    return {
        "db_bytes": a.db_files * a.db_size,
        "db_files": a.db_files,
        "db_file_size": a.db_size,
        "db_changed_files": changed,
        # the bytes of the files that changed: what a source must read at least
        "db_changed_file_bytes": len(changed) * a.db_size,
        "db_changed_pages": k * len(changed),
        "db_changed_bytes_4k": k * len(changed) * PAGE,
        "db_changed_chunks_1m": touched(MIB),
        "db_changed_bytes_1m": touched(MIB) * MIB,
    }


if __name__ == "__main__":
    main()
