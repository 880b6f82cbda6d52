//! What a run shows and how it holds back: `--json-events`, `--dry-run`,
//! `--max-delete`, `--delete` after a failed file, and the progress display
//! on a terminal.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::util::*;

const CHUNK: usize = 4096;
const C: &str = "4096";

/// Makes `way`'s destination a mirror of a varied source, then changes
/// both so that the next run has one of each thing to do: `big.bin`
/// updated (its first chunk), `plain.txt` metadata only (its mode),
/// `new.txt`, `fresh/` and `fresh/x` created, `stale.txt`, `stale-dir/x`
/// and `stale-dir` deleted (with `--delete`), all else unchanged.
fn one_of_each(way: &Way) {
    fs::create_dir_all(&way.src).unwrap();
    varied_tree(&way.src, CHUNK);
    way.sync(&["-c", C]);
    assert_same_tree(&way.src, &way.dst);
    let big = way.src.join("big.bin");
    let mut data = fs::read(&big).unwrap();
    data[..10].copy_from_slice(b"0123456789");
    file(&big, &data, 0o755, (1_700_000_000, 999_999_999));
    set_mode(&way.src.join("plain.txt"), 0o600);
    file(&way.src.join("new.txt"), b"new", 0o644, (1_600_000_000, 0));
    file(&way.src.join("fresh/x"), &noise(9000, 7), 0o644, (1_600_000_000, 0));
    file(&way.dst.join("stale.txt"), b"stale", 0o644, (1_600_000_000, 0));
    file(&way.dst.join("stale-dir/x"), b"stale", 0o644, (1_600_000_000, 0));
}

/// The counts of a `--json` report that a dry run must predict.
const COUNTS: [&str; 14] = [
    "files_total",
    "files_transferred",
    "files_skipped",
    "files_deleted",
    "files_failed",
    "dirs_total",
    "symlinks_total",
    "bytes_total",
    "bytes_transferred",
    "bytes_skipped",
    "chunks_total",
    "chunks_transferred",
    "chunks_skipped",
    "errors",
];

fn counts(report: &Value) -> BTreeMap<&'static str, u64> {
    COUNTS.iter().map(|k| (*k, report[k].as_u64().unwrap_or_else(|| panic!("{k} in {report}")))).collect()
}

#[test]
fn json_events_tell_every_entry_progress_and_the_report() {
    for way in both_ways() {
        one_of_each(&way);
        let out = way.run(&["-c", C, "--delete", "--json-events"]);
        assert!(out.status.success(), "{}: {}", way.name, stderr(&out));
        assert_same_tree(&way.src, &way.dst);
        let events: Vec<Value> = String::from_utf8(out.stdout)
            .expect("UTF-8")
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect();
        let kind = |e: &Value| e["event"].as_str().expect("an event key").to_owned();
        assert!(events.iter().all(|e| ["progress", "file", "report"].contains(&kind(e).as_str())));
        // One file event per entry of the source and per entry deleted.
        let mut actions = BTreeMap::new();
        for e in events.iter().filter(|e| kind(e) == "file") {
            let path = e["path"].as_str().unwrap().to_owned();
            let action = e["action"].as_str().unwrap().to_owned();
            assert!(actions.insert(path.clone(), action).is_none(), "{path} told twice");
        }
        let mut expected: BTreeMap<String, String> =
            snapshot(&way.src).into_keys().map(|path| (path, "unchanged".to_owned())).collect();
        for (path, action) in [
            ("big.bin", "updated"),
            ("plain.txt", "metadata"),
            ("new.txt", "created"),
            ("fresh", "created"),
            ("fresh/x", "created"),
            ("stale.txt", "deleted"),
            ("stale-dir/x", "deleted"),
            ("stale-dir", "deleted"),
        ] {
            expected.insert(path.to_owned(), action.to_owned());
        }
        assert_eq!(actions, expected, "{}", way.name);
        let big = events.iter().find(|e| e["path"] == "big.bin").unwrap();
        assert_eq!((big["chunks_sent"].as_u64(), big["chunks"].as_u64()), (Some(1), Some(6)), "{big}");
        assert_eq!(big["kind"], "file");
        assert_eq!(events.iter().find(|e| e["path"] == "fresh").unwrap()["kind"], "dir");
        // Progress: the last one says the run is done, with final totals.
        let last = events.iter().rfind(|e| kind(e) == "progress").expect("a progress event");
        assert_eq!(last["phase"], "done");
        assert_eq!(last["totals_final"], true);
        assert_eq!(last["files_done"], last["files_total"]);
        assert_eq!(last["bytes_done"], last["bytes_total"]);
        // The report comes last, with the keys of --json.
        let report = events.last().unwrap();
        assert_eq!(kind(report), "report");
        assert_eq!(report["files_transferred"], 3);
        assert_eq!(report["files_deleted"], 2);
        let json = way.sync(&["-c", C]);
        let mut keys: BTreeSet<&String> = report.as_object().unwrap().keys().collect();
        assert!(keys.remove(&"event".to_owned()));
        assert_eq!(keys, json.as_object().unwrap().keys().collect());
    }
}

#[test]
fn json_events_carry_warnings_and_errors() {
    let way = both_ways().into_iter().next().unwrap();
    one_of_each(&way);
    let out = way.run(&["-c", C, "--delete", "--max-delete", "1", "--json-events"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let errors: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] == "error")
        .collect();
    assert!(
        errors.iter().any(|e| e["message"].as_str().unwrap().contains("3 entries would be deleted")),
        "{text}"
    );
    assert!(
        errors.iter().any(|e| e["message"].as_str().unwrap().contains("not a complete mirror")),
        "{text}"
    );
}

#[test]
fn dry_run_changes_nothing_and_counts_what_the_real_run_does() {
    for way in both_ways() {
        one_of_each(&way);
        let before = snapshot(&way.dst);
        let dry = way.sync(&["-c", C, "--delete", "--dry-run"]);
        assert!(snapshot(&way.dst) == before, "{}: the dry run changed the destination", way.name);
        // Without --json, the changes are listed on stdout, one a line.
        let out = way.run(&["-c", C, "--delete", "--dry-run"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(snapshot(&way.dst) == before, "{}: the dry run changed the destination", way.name);
        let sent = if way.name == "send" { '<' } else { '>' };
        let lines: BTreeSet<String> =
            String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect();
        let expected: BTreeSet<String> = [
            format!("{sent}fc........ big.bin"),
            ".f...p..... plain.txt".to_owned(),
            format!("{sent}f+++++++++ new.txt"),
            "cd+++++++++ fresh/".to_owned(),
            format!("{sent}f+++++++++ fresh/x"),
            "*deleting   stale.txt".to_owned(),
            "*deleting   stale-dir/x".to_owned(),
            "*deleting   stale-dir/".to_owned(),
        ]
        .into_iter()
        .collect();
        assert_eq!(lines, expected, "{}", way.name);
        // The real run does what the dry run said.
        let real = way.sync(&["-c", C, "--delete"]);
        assert_same_tree(&way.src, &way.dst);
        assert_eq!(counts(&dry), counts(&real), "{}", way.name);
    }
}

#[test]
fn dry_run_download_into_a_missing_directory_makes_nothing() {
    let server = Server::start(&[]);
    varied_tree(&server.path("d"), CHUNK);
    let parent = tempfile::tempdir().unwrap();
    let local = parent.path().join("not-yet");
    let dry = sync_ok(&["recv", &server.url("d"), local.to_str().unwrap(), "-c", C, "--dry-run"]);
    assert!(!local.exists());
    assert_eq!(fs::read_dir(parent.path()).unwrap().count(), 0);
    let real = sync_ok(&["recv", &server.url("d"), local.to_str().unwrap(), "-c", C]);
    assert_same_tree(&server.path("d"), &local);
    assert_eq!(counts(&dry), counts(&real));
}

#[test]
fn dry_run_upload_into_a_directory_the_server_lacks_makes_nothing_there() {
    let server = Server::start(&[]);
    let src = tempfile::tempdir().unwrap();
    varied_tree(src.path(), CHUNK);
    let (local, url) = (src.path().to_str().unwrap(), server.url("new/d"));
    let out = pareco(&["send", local, &url, "-c", C, "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!server.path("new").exists(), "the dry run made the target on the server");
    // Every entry would be created: one line each, all new.
    let lines: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect();
    let entries = snapshot(src.path()).len();
    assert_eq!(lines.len(), entries, "{lines:?}");
    assert!(lines.iter().all(|l| l.contains("+++++++++ ")), "{lines:?}");
    let dry = sync_ok(&["send", local, &url, "-c", C, "--dry-run"]);
    assert!(!server.path("new").exists());
    let real = sync_ok(&["send", local, &url, "-c", C]);
    assert_same_tree(src.path(), &server.path("new/d"));
    assert_eq!(counts(&dry), counts(&real));
}

#[test]
fn max_delete_deletes_none_when_more_would_go() {
    for way in both_ways() {
        one_of_each(&way);
        let out = way.run(&["-c", C, "--delete", "--max-delete", "2"]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("--max-delete 2: 3 entries would be deleted; none was"),
            "{}",
            stderr(&out)
        );
        // Everything else was synced; nothing was deleted.
        assert!(way.dst.join("stale.txt").exists() && way.dst.join("stale-dir/x").exists());
        assert_eq!(fs::read(way.dst.join("new.txt")).unwrap(), b"new");
        let done = way.sync(&["-c", C, "--delete", "--max-delete", "3"]);
        assert_eq!(done["files_deleted"], 2);
        assert_same_tree(&way.src, &way.dst);
    }
}

#[test]
fn delete_waits_for_every_file_to_arrive() {
    let server = Server::start(&[]);
    let src = tempfile::tempdir().unwrap();
    set_mode(src.path(), 0o755);
    file(&src.path().join("keep.txt"), b"keep", 0o644, (1_600_000_000, 0));
    file(&src.path().join("locked.bin"), &noise(9000, 5), 0o644, (1_600_000_000, 0));
    let (local, url) = (src.path().to_str().unwrap(), server.url("d"));
    sync_ok(&["send", local, &url, "-c", C]);
    file(&server.path("d/extra.txt"), b"extra", 0o644, (1_600_000_000, 0));
    // The client cannot read this file any more: it fails, the rest is sent.
    file(&src.path().join("locked.bin"), &noise(9000, 6), 0o000, (1_600_000_001, 0));
    file(&src.path().join("keep.txt"), b"kept", 0o644, (1_600_000_002, 0));
    let out = unprivileged(&["send", local, &url, "--delete", "-c", C, "--json-events"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("--delete skipped: 1 error(s)"), "{}", stderr(&out));
    // The events say so too: the file that failed and why, the warning.
    let events: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let locked = events.iter().find(|e| e["path"] == "locked.bin").expect("an event for locked.bin");
    assert_eq!(locked["action"], "failed");
    assert!(locked["why"].as_str().unwrap().contains("ermission denied"), "{locked}");
    let warned =
        |e: &&Value| e["event"] == "warning" && e["message"].as_str().unwrap().contains("--delete skipped");
    assert!(events.iter().any(|e| warned(&e)), "{events:?}");
    assert_eq!(fs::read(server.path("d/extra.txt")).unwrap(), b"extra");
    assert_eq!(fs::read(server.path("d/keep.txt")).unwrap(), b"kept");
    assert_eq!(fs::read(server.path("d/locked.bin")).unwrap(), noise(9000, 5));
}

/// Runs `args` with stderr and stdout on a pseudo-terminal (util-linux
/// `script`); returns what the terminal showed.
fn on_terminal(args: &[&str]) -> String {
    let quoted: Vec<String> =
        std::iter::once(BIN).chain(args.iter().copied()).map(|a| format!("'{a}'")).collect();
    let out = Command::new("script")
        .args(["-qec", &quoted.join(" "), "/dev/null"])
        .env_remove("PARECO_TOKEN")
        .output()
        .expect("run script (util-linux)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn progress_is_drawn_on_a_terminal_only() {
    let server = Server::start(&[]);
    let src = tempfile::tempdir().unwrap();
    varied_tree(src.path(), CHUNK);
    let (local, url) = (src.path().to_str().unwrap(), server.url("d"));
    let shown = on_terminal(&["send", local, &url, "-c", C]);
    let phases = ["] listing", "] comparing", "] sending", "] finishing"];
    assert!(phases.iter().any(|p| shown.contains(p)), "no progress display:\n{shown}");
    let summary = shown.lines().rfind(|l| l.contains("done: ")).expect("a summary line");
    assert!(summary.contains("done: 7 files (7 transferred, 0 skipped, 0 failed, 0 deleted)"), "{summary}");
    assert_same_tree(src.path(), &server.path("d"));
    // Not with -q or --no-progress, not when stderr is a pipe, unless forced.
    for quiet in ["-q", "--no-progress"] {
        let shown = on_terminal(&["send", local, &url, "-c", C, quiet]);
        assert!(!shown.contains("done: "), "{quiet}: {shown}");
    }
    let piped = pareco(&["send", local, &url, "-c", C]);
    assert!(piped.status.success());
    assert!(!stderr(&piped).contains("done: ") && !stderr(&piped).contains("files 0/"), "{}", stderr(&piped));
    let forced = pareco(&["send", local, &url, "-c", C, "--progress"]);
    assert!(stderr(&forced).contains("done: 7 files (0 transferred, 7 skipped"), "{}", stderr(&forced));
}

#[test]
fn log_lines_print_above_the_progress_display() {
    let server = Server::start(&[]);
    let src = tempfile::tempdir().unwrap();
    varied_tree(src.path(), CHUNK);
    let (local, url) = (src.path().to_str().unwrap(), server.url("d"));
    // -v logs a line per file while the display is drawn.
    let shown = on_terminal(&["send", local, &url, "-c", C, "-v"]);
    let clean = strip_terminal_codes(&shown);
    let logged = clean.lines().find(|l| l.contains("big.bin: 6 of 6 chunk(s) sent"));
    let logged = logged.unwrap_or_else(|| panic!("no log line in:\n{clean}\nfrom:\n{shown:?}"));
    // A whole line of its own: the display was cleared before it.
    assert!(!logged.contains('['), "{logged:?}");
    assert!(clean.contains("done: 7 files (7 transferred"), "{clean}");
    assert!(Path::new(&server.path("d/big.bin")).exists());
}

/// `text` as it reads on a terminal, line by line: each line as its last
/// `\r` or erase left it, escape sequences dropped.
fn strip_terminal_codes(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    let mut line = String::new();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                // CSI: ESC [ params final-byte.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    let mut last = ' ';
                    for d in chars.by_ref() {
                        last = d;
                        if d.is_ascii_alphabetic() {
                            break;
                        }
                    }
                    if last == 'K' {
                        line.clear();
                    }
                }
            }
            '\r' if chars.peek() != Some(&'\n') => line.clear(),
            '\r' => {}
            '\n' => {
                out.push_str(&line);
                out.push('\n');
                line.clear();
            }
            c => line.push(c),
        }
    }
    out.push_str(&line);
    out
}

/// `--delete`, and a directory the source has as a file or a symlink now:
/// what it holds counts against `--max-delete` and goes only with the
/// other deletions; excluded entries in it stay, and so does it.
#[test]
fn a_directory_replaced_by_a_file_or_a_symlink_goes_with_the_deletions() {
    for way in both_ways() {
        fs::create_dir_all(&way.src).unwrap();
        file(&way.src.join("db"), &noise(3 * CHUNK, 8), 0o644, (1_600_000_000, 0));
        std::os::unix::fs::symlink("elsewhere", way.src.join("link")).unwrap();
        for dir in ["db", "link"] {
            for name in ["a", "b"] {
                file(&way.dst.join(dir).join(name), name.as_bytes(), 0o644, (1_600_000_000, 0));
            }
        }
        // Four entries would go: more than --max-delete 3, so none does,
        // and neither directory makes way.
        let out = way.run(&["-c", C, "--delete", "--max-delete", "3"]);
        assert_eq!(out.status.code(), Some(1), "{}: {}", way.name, stderr(&out));
        let errors = stderr(&out);
        assert!(errors.contains("--max-delete 3: 4 entries would be deleted; none was"), "{errors}");
        assert!(errors.contains("db: not replaced: a directory is there"), "{errors}");
        for dir in ["db", "link"] {
            assert_eq!(fs::read(way.dst.join(dir).join("a")).unwrap(), b"a", "{}", way.name);
        }
        // An excluded entry in one of them keeps it there; the other goes.
        file(&way.dst.join("db/keep.me"), b"mine", 0o644, (1_600_000_000, 0));
        let out = way.run(&["-c", C, "--delete", "--exclude", "db/keep.me"]);
        assert_eq!(out.status.code(), Some(1), "{}: {}", way.name, stderr(&out));
        assert!(stderr(&out).contains("holds entries this run does not delete"), "{}", stderr(&out));
        assert_eq!(fs::read(way.dst.join("db/keep.me")).unwrap(), b"mine");
        assert_eq!(fs::read_link(way.dst.join("link")).unwrap(), Path::new("elsewhere"));
        // The rest of it went (those deletions counted); without the
        // excluded entry the directory makes way, and the mirror is exact.
        assert!(!way.dst.join("db/a").exists() && !way.dst.join("db/b").exists());
        fs::remove_file(way.dst.join("db/keep.me")).unwrap();
        let done = way.sync(&["-c", C, "--delete"]);
        assert_eq!((done["files_deleted"].as_u64(), done["files_transferred"].as_u64()), (Some(0), Some(1)));
        assert_same_tree(&way.src, &way.dst);
    }
}
