//! `-X`/`--xattrs` through the real binary, both ways: extended
//! attributes of files, directories (the root included) and, as root,
//! symlinks arrive; one changed alone is fixed without sending data; one
//! removed at the source, or only ever at the destination, goes. Without
//! `-X` none are touched. And a peer that lies about attributes is
//! refused when its message is decoded.
//!
//! Skipped, saying so, where the file system of the temporary directory
//! has no user attributes.

use std::collections::BTreeMap;
use std::path::Path;

use pareco::codec::{Xattr, XattrList, Xattrs};
use rustix::fs::XattrFlags;
use serde_bytes::ByteBuf;

use crate::util::{assert_same_tree, both_ways, file};

type Attrs = BTreeMap<String, Vec<u8>>;

fn set(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, XattrFlags::empty()).unwrap();
}

fn remove(path: &Path, name: &str) {
    rustix::fs::lremovexattr(path, name).unwrap();
}

/// The attributes of `path` itself, of every namespace this process sees
/// except `security.` (labels a system may add on its own).
fn attrs(path: &Path) -> Attrs {
    let mut names = vec![0u8; 64 << 10];
    let len = rustix::fs::llistxattr(path, &mut names[..]).unwrap();
    let mut out = Attrs::new();
    for name in names[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8(name.to_vec()).unwrap();
        if name.starts_with("security.") {
            continue;
        }
        let mut value = vec![0u8; 64 << 10];
        let n = rustix::fs::lgetxattr(path, name.as_str(), &mut value[..]).unwrap();
        value.truncate(n);
        out.insert(name, value);
    }
    out
}

/// Every entry's attributes below `root`, the root's included.
fn all_attrs(root: &Path) -> BTreeMap<String, Attrs> {
    let mut out = BTreeMap::from([(String::new(), attrs(root))]);
    for path in crate::util::snapshot(root).keys() {
        out.insert(path.clone(), attrs(&root.join(path)));
    }
    out
}

/// Does the file system of the temporary directory keep user attributes?
fn supported() -> bool {
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe");
    std::fs::write(&probe, b"").unwrap();
    rustix::fs::lsetxattr(&probe, "user.probe", b"1", XattrFlags::empty()).is_ok()
}

#[test]
fn attributes_of_files_dirs_and_symlinks_travel_and_changes_alone_cost_no_data() {
    if !supported() {
        eprintln!("skipped: the file system of the temporary directory has no user extended attributes");
        return;
    }
    let root = rustix::process::geteuid().is_root();
    for way in both_ways() {
        let (src, dst) = (&way.src, &way.dst);
        let t = (1_600_000_000, 5);
        file(&src.join("doc.txt"), b"some text", 0o644, t);
        file(&src.join("big.bin"), &crate::util::noise(300_000, 9), 0o600, t);
        file(&src.join("plain"), b"no attributes", 0o644, t);
        file(&src.join("dir/inner"), b"inner", 0o644, t);
        std::os::unix::fs::symlink("doc.txt", src.join("link")).unwrap();
        set(&src.join("doc.txt"), "user.comment", b"hello");
        set(&src.join("doc.txt"), "user.empty", b"");
        set(&src.join("big.bin"), "user.big", &vec![7u8; 4000]);
        set(&src.join("dir"), "user.dir", b"on a directory");
        set(src, "user.root", b"on the root");
        if root {
            // User attributes are not allowed on symlinks; trusted ones are.
            set(&src.join("link"), "trusted.link", b"on a symlink");
            set(&src.join("doc.txt"), "trusted.secret", b"root only");
        }
        crate::util::set_mtime(&src.join("dir"), (1_650_000_000, 0));
        let name = way.name;
        way.sync(&["-X", "-c", "64k"]);
        assert_same_tree(src, dst);
        assert_eq!(all_attrs(src), all_attrs(dst), "{name}");
        if root {
            assert_eq!(attrs(&dst.join("link"))["trusted.link"], b"on a symlink", "{name}");
        }

        // One attribute changed, one added, one removed, one only ever at
        // the destination: fixed without sending any data.
        set(&src.join("doc.txt"), "user.comment", b"changed");
        set(&src.join("big.bin"), "user.new", b"new");
        remove(&src.join("doc.txt"), "user.empty");
        set(&dst.join("plain"), "user.stray", b"only here");
        set(&src.join("dir"), "user.dir", b"changed on a directory");
        if root {
            set(&src.join("link"), "trusted.link", b"changed on a symlink");
        }
        let report = way.sync(&["-X", "-c", "64k"]);
        assert_eq!(report["bytes_transferred"], 0, "{name}: {report}");
        assert_eq!(report["files_transferred"], 0, "{name}: {report}");
        assert_same_tree(src, dst);
        assert_eq!(all_attrs(src), all_attrs(dst), "{name}");

        // Without -X, attributes are left as they are.
        set(&dst.join("plain"), "user.stray", b"only here");
        way.sync(&[]);
        assert_eq!(attrs(&dst.join("plain"))["user.stray"], b"only here", "{name}");
    }
}

#[test]
fn attribute_lists_over_the_limits_or_outside_the_namespaces_are_refused_when_decoded() {
    let attr =
        |name: &[u8], len: usize| Xattr { name: ByteBuf::from(name), value: ByteBuf::from(vec![1u8; len]) };
    // What a lying peer may send: raw lists, encoded as `Xattrs::Listed`.
    let lies: Vec<(&str, Vec<Xattr>)> = vec![
        ("too many", (0..65).map(|i| attr(format!("user.a{i:03}").as_bytes(), 1)).collect()),
        ("too large", vec![attr(b"user.a", 40 << 10), attr(b"user.b", 30 << 10)]),
        ("no namespace", vec![attr(b"comment", 1)]),
        ("an empty name in a namespace", vec![attr(b"user.", 1)]),
        ("a NUL", vec![attr(b"user.a\0b", 1)]),
        ("a name too long", vec![attr(&[b"user.".as_slice(), &[b'x'; 251]].concat(), 1)]),
        ("unsorted", vec![attr(b"user.b", 1), attr(b"user.a", 1)]),
        ("twice", vec![attr(b"user.a", 1), attr(b"user.a", 2)]),
    ];
    for (what, list) in lies {
        let bytes = rmp_serde::to_vec(&BTreeMap::from([("Listed", list)])).unwrap();
        let decoded: Result<Xattrs, _> = rmp_serde::from_slice(&bytes);
        assert!(decoded.is_err(), "{what}: decoded as {decoded:?}");
    }
    let bytes = rmp_serde::to_vec(&BTreeMap::from([("Digest", ByteBuf::from(vec![0u8; 31]))])).unwrap();
    assert!(rmp_serde::from_slice::<Xattrs>(&bytes).is_err(), "a digest of 31 bytes");
    // The largest list allowed decodes.
    let most: Vec<Xattr> = (0..64).map(|i| attr(format!("user.a{i:03}").as_bytes(), 1000)).collect();
    let list = XattrList::new(most).unwrap();
    let bytes = rmp_serde::to_vec(&Xattrs::Listed(list.clone())).unwrap();
    assert_eq!(rmp_serde::from_slice::<Xattrs>(&bytes).unwrap(), Xattrs::Listed(list));
}
