#!/usr/bin/env python3
"""dbpatch.py DB_DIR TREE: the change of scenario 9 (benches/compare.sh), made
in place the way a database writes: for every file DB_DIR/changes.json names,
the listed 4 KiB pages of TREE/FILE (a copy of DB_DIR/old) are overwritten with
those of DB_DIR/new/FILE (pwrite, same inode, same size), and its mtime is set
to the new version's. The other files of TREE are not touched."""
import json
import os
import sys


def main():
    db, tree = sys.argv[1], sys.argv[2]
    with open(os.path.join(db, "changes.json")) as f:
        changes = json.load(f)
    page = changes["page"]
    for name, pages in changes["pages"].items():
        src = os.open(os.path.join(db, "new", name), os.O_RDONLY)
        dst = os.open(os.path.join(tree, name), os.O_WRONLY)
        for p in pages:
            data = os.pread(src, page, p * page)
            if os.pwrite(dst, data, p * page) != len(data):
                raise SystemExit(f"dbpatch.py: short write to {name}")
        os.close(dst)
        os.close(src)
        os.utime(os.path.join(tree, name), (changes["mtime"], changes["mtime"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
