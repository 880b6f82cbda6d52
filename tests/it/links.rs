//! `-H` / `--hard-links`: files that are hard links of each other in the
//! source arrive as hard links of each other, their data sent once, both
//! ways; a group partly excluded, a re-sync, and a separate copy at the
//! destination turned into a link.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::util::{both_ways, file, noise, snapshot, Snap};

fn ino(path: &Path) -> u64 {
    fs::symlink_metadata(path).unwrap().ino()
}

/// `a` (three chunks of 64 KiB and a bit), linked as `sub/b`, `other/c`
/// and the excluded `skip-me`; `x` (small), linked as `deep/er/y`.
fn linked_tree(src: &Path) {
    file(&src.join("a"), &noise(200_000, 1), 0o640, (1_700_000_000, 5));
    file(&src.join("x"), b"a small file with a second name", 0o600, (1_600_000_000, 7));
    for dir in ["sub", "other", "deep/er"] {
        fs::create_dir_all(src.join(dir)).unwrap();
    }
    fs::hard_link(src.join("a"), src.join("sub/b")).unwrap();
    fs::hard_link(src.join("a"), src.join("other/c")).unwrap();
    fs::hard_link(src.join("a"), src.join("skip-me")).unwrap();
    fs::hard_link(src.join("x"), src.join("deep/er/y")).unwrap();
}

/// The destination has what the source has, but `skip-me`, in every byte,
/// mode and mtime.
fn assert_mirrored(src: &Path, dst: &Path) {
    let mut want = snapshot(src);
    want.remove("skip-me");
    let have = snapshot(dst);
    assert_eq!(want.keys().collect::<Vec<_>>(), have.keys().collect::<Vec<_>>());
    for (path, snap) in &want {
        assert!(have[path] == *snap, "{path} differs");
    }
}

fn assert_linked(dst: &Path) {
    let a = ino(&dst.join("a"));
    assert_eq!(ino(&dst.join("sub/b")), a, "sub/b is not a link of a");
    assert_eq!(ino(&dst.join("other/c")), a, "other/c is not a link of a");
    assert_eq!(ino(&dst.join("deep/er/y")), ino(&dst.join("x")), "deep/er/y is not a link of x");
    assert_ne!(a, ino(&dst.join("x")));
    assert_eq!(fs::metadata(dst.join("a")).unwrap().nlink(), 3);
}

#[test]
fn hard_links_arrive_as_hard_links_and_their_data_travels_once() {
    for way in both_ways() {
        let name = way.name;
        linked_tree(&way.src);
        let data = 200_000 + b"a small file with a second name".len() as u64;
        let opts = ["-H", "-c", "64KiB", "-e", "skip-me"];
        let first = way.sync(&opts);
        assert_mirrored(&way.src, &way.dst);
        assert_linked(&way.dst);
        assert!(!way.dst.join("skip-me").exists(), "{name}: the excluded name arrived");
        assert_eq!(first["files_linked"], 3, "{name}: {first}");
        assert_eq!(first["bytes_total"], data, "{name}: data counted once: {first}");
        assert_eq!(first["bytes_transferred"], data, "{name}: data sent once: {first}");
        assert_eq!(first["errors"], 0, "{name}");

        // A re-sync changes nothing: the same inodes, nothing sent.
        let before = ino(&way.dst.join("a"));
        let again = way.sync(&opts);
        assert_eq!(again["bytes_transferred"], 0, "{name}: {again}");
        assert_eq!(ino(&way.dst.join("a")), before, "{name}: a was replaced");
        assert_linked(&way.dst);

        // A separate copy at the destination becomes a link again.
        let c = way.dst.join("other/c");
        fs::copy(c.clone(), way.dst.join("other/copy")).unwrap();
        fs::rename(way.dst.join("other/copy"), &c).unwrap();
        assert_ne!(ino(&c), ino(&way.dst.join("a")));
        let fixed = way.sync(&opts);
        assert_eq!(fixed["bytes_transferred"], 0, "{name}: {fixed}");
        assert_linked(&way.dst);
        assert_mirrored(&way.src, &way.dst);
    }
}

#[test]
fn without_hard_links_each_name_is_its_own_file() {
    for way in both_ways() {
        linked_tree(&way.src);
        let report = way.sync(&["-c", "64KiB", "-e", "skip-me"]);
        assert_mirrored(&way.src, &way.dst);
        assert_ne!(ino(&way.dst.join("sub/b")), ino(&way.dst.join("a")));
        assert_eq!(report["files_linked"], 0);
        // And every name's data travelled.
        assert!(report["bytes_transferred"].as_u64().unwrap() > 3 * 200_000, "{report}");
    }
}

#[test]
fn a_link_group_of_regular_files_only_is_listed_and_symlinks_stay_symlinks() {
    for way in both_ways() {
        file(&way.src.join("f"), b"target", 0o644, (1_600_000_000, 0));
        fs::hard_link(way.src.join("f"), way.src.join("g")).unwrap();
        std::os::unix::fs::symlink("f", way.src.join("s")).unwrap();
        way.sync(&["-H"]);
        assert_eq!(ino(&way.dst.join("g")), ino(&way.dst.join("f")));
        assert!(matches!(snapshot(&way.dst)["s"], Snap::Link { .. }));
    }
}

/// The `file` events of a `--json-events` run of `way` with `opts`: each
/// path with its action, each told once.
fn told(way: &crate::util::Way, opts: &[&str]) -> std::collections::BTreeMap<String, String> {
    let url = way.server.url("d");
    let local = way.local.path().to_str().expect("UTF-8 temp path");
    let mut args = match way.name {
        "send" => vec!["send", local, &url],
        _ => vec!["recv", &url, local],
    };
    args.extend_from_slice(opts);
    args.push("--json-events");
    let out = crate::util::pareco(&args);
    assert!(out.status.success(), "{}: {}", way.name, crate::util::stderr(&out));
    let mut actions = std::collections::BTreeMap::new();
    for line in String::from_utf8(out.stdout).expect("UTF-8").lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if event["event"] == "file" {
            let path = event["path"].as_str().unwrap().to_owned();
            let action = event["action"].as_str().unwrap().to_owned();
            assert!(actions.insert(path.clone(), action).is_none(), "{}: {path} told twice", way.name);
        }
    }
    actions
}

#[test]
fn every_name_is_told_and_a_dry_run_links_nothing() {
    for way in both_ways() {
        let name = way.name;
        linked_tree(&way.src);
        let opts = ["-H", "-c", "64KiB", "-e", "skip-me"];
        let files = ["a", "x", "sub/b", "other/c", "deep/er/y"];
        let every = |action: &str| -> Vec<(String, String)> {
            files.iter().map(|f| (f.to_string(), action.to_owned())).collect()
        };
        let only_files = |told: std::collections::BTreeMap<String, String>| -> Vec<(String, String)> {
            told.into_iter().filter(|(path, _)| files.contains(&path.as_str())).collect()
        };
        let sorted = |mut v: Vec<(String, String)>| {
            v.sort();
            v
        };

        // A dry run tells every name as created, and makes none of them.
        let dry = told(&way, &[&opts[..], &["--dry-run"]].concat());
        assert_eq!(only_files(dry), sorted(every("created")), "{name}");
        let made = if way.dst.exists() { snapshot(&way.dst) } else { Default::default() };
        assert!(made.is_empty(), "{name}: a dry run made {:?}", made.keys().collect::<Vec<_>>());

        let first = told(&way, &opts);
        assert_eq!(only_files(first), sorted(every("created")), "{name}");
        assert_linked(&way.dst);
        assert_mirrored(&way.src, &way.dst);
        let again = told(&way, &opts);
        assert_eq!(only_files(again), sorted(every("unchanged")), "{name}");
        assert_linked(&way.dst);
    }
}

/// `-H --delete`, and directories at the destination where the source has
/// a file and its other name: both make way with the deletions (counted,
/// bounded by `--max-delete`), and then arrive as hard links.
#[test]
fn directories_at_the_names_of_a_link_group_go_with_the_deletions() {
    for way in both_ways() {
        fs::create_dir_all(&way.src).unwrap();
        file(&way.src.join("a"), &noise(3 * 4096, 3), 0o644, (1_600_000_000, 0));
        fs::hard_link(way.src.join("a"), way.src.join("b")).unwrap();
        for dir in ["a", "b"] {
            file(&way.dst.join(dir).join("old"), b"old", 0o644, (1_600_000_000, 0));
        }
        let out = way.run(&["-c", "4096", "-H", "--delete", "--max-delete", "1"]);
        assert_eq!(out.status.code(), Some(1), "{}: {}", way.name, crate::util::stderr(&out));
        let errors = crate::util::stderr(&out);
        assert!(errors.contains("--max-delete 1: 2 entries would be deleted"), "{errors}");
        assert!(errors.contains("b: not linked: a directory is there"), "{errors}");
        for dir in ["a", "b"] {
            assert_eq!(fs::read(way.dst.join(dir).join("old")).unwrap(), b"old", "{}", way.name);
        }
        let report = way.sync(&["-c", "4096", "-H", "--delete"]);
        assert_eq!(report["files_linked"], 1, "{report}");
        assert_eq!(ino(&way.dst.join("b")), ino(&way.dst.join("a")), "{}", way.name);
        assert_eq!(fs::read(way.dst.join("b")).unwrap(), fs::read(way.src.join("a")).unwrap());
    }
}
