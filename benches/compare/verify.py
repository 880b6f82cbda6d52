#!/usr/bin/env python3
"""verify.py SRC DST: is DST an exact mirror of SRC? Compares the set of
entries, types, sizes, bytes, permission bits and mtimes (nanoseconds).
Prints "ok" or one line per problem (at most 10) and exits 1 on a mismatch."""
import os
import stat
import sys

BLOCK = 4 << 20


def entries(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, root)] = os.lstat(p)
    return out


def same_bytes(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x = fa.read(BLOCK)
            y = fb.read(BLOCK)
            if x != y:
                return False
            if not x:
                return True


def main():
    src, dst = sys.argv[1], sys.argv[2]
    if not os.path.isdir(dst):
        print(f"FAIL: {dst} does not exist")
        return 1
    s, d = entries(src), entries(dst)
    problems = []
    for rel in sorted(set(s) - set(d)):
        problems.append(f"missing {rel}")
    for rel in sorted(set(d) - set(s)):
        problems.append(f"extra {rel}")
    for rel in sorted(set(s) & set(d)):
        a, b = s[rel], d[rel]
        if stat.S_IFMT(a.st_mode) != stat.S_IFMT(b.st_mode):
            problems.append(f"type differs {rel}")
            continue
        if stat.S_ISREG(a.st_mode):
            if a.st_size != b.st_size:
                problems.append(f"size differs {rel}: {a.st_size} vs {b.st_size}")
                continue
            if not same_bytes(os.path.join(src, rel), os.path.join(dst, rel)):
                problems.append(f"content differs {rel}")
            if a.st_mtime_ns != b.st_mtime_ns:
                problems.append(f"mtime differs {rel}: {a.st_mtime_ns} vs {b.st_mtime_ns}")
        if stat.S_IMODE(a.st_mode) != stat.S_IMODE(b.st_mode):
            problems.append(f"mode differs {rel}: {oct(a.st_mode)} vs {oct(b.st_mode)}")
    if problems:
        print(f"FAIL ({len(problems)} problems): " + "; ".join(problems[:10]))
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
