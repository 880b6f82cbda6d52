#!/usr/bin/env python3
"""Deterministic, incompressible test data for benches/compare.sh.

Bytes come from AES-128-CTR keystreams (openssl enc over /dev/zero) whose keys
are derived from a seed and a label, so the same arguments always produce the
same bytes, and nothing compresses them. Writes OUT/{big,small,delta/old,delta/new}
and OUT/manifest.json (sizes and the bytes that scenario 4 really changes).
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess

GEN_VERSION = 1
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
    a = ap.parse_args()
    params = {k: v for k, v in vars(a).items() if k != "out"}
    params["gen_version"] = GEN_VERSION

    out = a.out
    manifest_path = os.path.join(out, "manifest.json")
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            if json.load(f).get("params") == params:
                print(f"data in {out} is up to date (reused)")
                return
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)

    # 1, 3, 5, 6: big files
    big = os.path.join(out, "big")
    os.makedirs(big)
    for i in range(a.big_files):
        s = Stream(a.seed, f"big/{i}")
        p = os.path.join(big, f"file{i}.bin")
        write_stream(p, s, a.big_size)
        s.close()
        os.utime(p, (MTIME_SRC, MTIME_SRC))
    os.utime(big, (MTIME_SRC, MTIME_SRC))

    # 2: small files, spread evenly over the directories
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

    # 4: one big file, old version and new version with 1 % of its pages rewritten
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

    manifest = {
        "params": params,
        "big_bytes": a.big_files * a.big_size,
        "big_files": a.big_files,
        "small_bytes": made * a.small_size,
        "small_files": made,
        "small_dirs": a.small_dirs,
        "delta_bytes": a.delta_size,
        "delta_pages": pages,
        "delta_changed_pages": k,
        # bytes of the chunks that really changed, per chunk size
        "delta_changed_bytes_4k": k * PAGE,
        "delta_changed_chunks_1m": touched(MIB),
        "delta_changed_bytes_1m": min(touched(MIB) * MIB, a.delta_size),
    }
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"generated data in {out}: {json.dumps(manifest)}")


if __name__ == "__main__":
    main()
