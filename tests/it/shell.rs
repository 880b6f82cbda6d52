//! Fitting the shell: completion scripts and the man page from the clap
//! definitions, no colour without a terminal or with `NO_COLOR`, and the
//! Dockerfile and systemd unit, whose commands the real binary accepts.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::util::*;

/// The long options `pareco SUBCOMMAND --help` lists (not their aliases,
/// which clap_mangen does not render).
fn long_options(subcommand: &str) -> Vec<String> {
    let out = pareco(&[subcommand, "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let mut without_aliases = String::new();
    let mut rest = help.as_str();
    while let Some(start) = rest.find("[alias") {
        without_aliases.push_str(&rest[..start]);
        rest = rest[start..].split_once(']').map_or("", |(_, after)| after);
    }
    without_aliases.push_str(rest);
    let mut options: Vec<String> = without_aliases
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|word| word.starts_with("--") && word.len() > 2)
        .map(str::to_owned)
        .collect();
    options.sort();
    options.dedup();
    options
}

fn stdout_of(args: &[&str]) -> String {
    let out = pareco(args);
    assert!(out.status.success(), "pareco {args:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completion_scripts_know_the_subcommands_and_options() {
    let bash = stdout_of(&["completions", "bash"]);
    for word in ["listen", "send", "recv", "completions", "man"] {
        assert!(bash.contains(word), "{word} missing from the bash script");
    }
    for option in long_options("send").iter().chain(&long_options("listen")) {
        assert!(bash.contains(option.as_str()), "{option} missing from the bash script");
    }
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(script.path(), &bash).unwrap();
    let check = Command::new("bash").arg("-n").arg(script.path()).output().unwrap();
    assert!(check.status.success(), "bash -n: {}", String::from_utf8_lossy(&check.stderr));
    let complete = format!("source {}; complete -p pareco", script.path().display());
    let registered = Command::new("bash").args(["-c", &complete]).output().unwrap();
    assert!(String::from_utf8_lossy(&registered.stdout).contains("pareco"), "the script registers itself");

    for (shell, marker) in [("zsh", "#compdef pareco"), ("fish", "complete -c pareco")] {
        let script = stdout_of(&["completions", shell]);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("tls-fingerprint"), "{shell}");
    }
    let out = pareco(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "an unknown shell is a usage error");
}

#[test]
fn man_page_documents_every_option_of_every_subcommand() {
    let page = stdout_of(&["man"]);
    assert!(page.lines().any(|l| l.starts_with(".TH pareco 1 ")), "{}", &page[..page.len().min(300)]);
    // roff escapes the dashes of options.
    let text = page.replace("\\-", "-");
    for subcommand in ["listen", "send", "recv"] {
        assert!(text.contains(&format!(".SH \"PARECO {}\"", subcommand.to_uppercase())), "{subcommand}");
        for option in long_options(subcommand) {
            assert!(text.contains(&option), "{option} of {subcommand} missing from the man page");
        }
    }
    // It is a page man can read, if man is here.
    if let Ok(out) = Command::new("groff").args(["-man", "-Tutf8", "-ww", "-z"]).stdin(Stdio::piped()).spawn()
    {
        let mut child = out;
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), page.as_bytes()).unwrap();
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success(), "groff cannot read the man page");
    }
}

/// Runs `send -v` (a log line per file) under a pseudo-terminal with
/// `script`, with `NO_COLOR` as given; returns everything it printed.
fn under_terminal(no_color: Option<&str>, server: &Server, src: &Path, path: &str) -> String {
    let command = format!("{BIN} send -v -c 4096 {} {}", src.display(), server.url(path));
    let mut script = Command::new("script");
    script.args(["-qec", &command, "/dev/null"]).env_remove("NO_COLOR").env_remove("PARECO_TOKEN");
    if let Some(value) = no_color {
        script.env("NO_COLOR", value);
    }
    let out = script.stdin(Stdio::null()).output().expect("script (util-linux) runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A colour escape (SGR: ESC [ digits m).
fn has_colour(text: &str) -> bool {
    text.split('\u{1b}').skip(1).any(|rest| {
        let code = rest.strip_prefix('[').unwrap_or("");
        let end = code.find(|c: char| !(c.is_ascii_digit() || c == ';'));
        end.is_some_and(|i| code[i..].starts_with('m'))
    })
}

#[test]
fn logs_are_coloured_only_on_a_terminal_and_never_with_no_color() {
    let server = Server::start(&[]);
    let src = tempfile::tempdir().unwrap();
    file(&src.path().join("a.txt"), b"colour?\n", 0o644, (1_600_000_000, 0));

    let coloured = under_terminal(None, &server, src.path(), "t1");
    assert!(coloured.contains("a.txt"), "the per-file log line: {coloured:?}");
    assert!(has_colour(&coloured), "a terminal gets colour: {coloured:?}");
    assert_same_tree(src.path(), &server.path("t1"));

    let plain = under_terminal(Some("1"), &server, src.path(), "t2");
    assert!(plain.contains("a.txt"), "{plain:?}");
    // (The progress display still moves the cursor: that is not colour.)
    assert!(!has_colour(&plain), "NO_COLOR=1 on a terminal: {plain:?}");
    assert_same_tree(src.path(), &server.path("t2"));

    // Not a terminal: no escape either.
    let local = src.path().to_str().unwrap();
    let out = Command::new(BIN)
        .args(["send", "-v", "-c", "4096", local, &server.url("t3")])
        .env_remove("NO_COLOR")
        .env_remove("PARECO_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = stderr(&out);
    assert!(err.contains("a.txt") && !err.contains('\u{1b}'), "{err:?}");
}

/// Starts the binary with `args` and expects it to say `listening on`.
fn serves(args: &[String], env: &[(&str, &Path)]) {
    let mut command = Command::new(BIN);
    command.args(args).env_remove("PARECO_TOKEN").stdout(Stdio::null()).stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut said = Vec::new();
    let mut listening = false;
    for line in lines {
        let line = line.unwrap();
        listening = line.starts_with("listening on ");
        said.push(line);
        if listening {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(listening, "pareco {args:?} does not serve:\n{}", said.join("\n"));
}

fn repo_file(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).unwrap()
}

#[test]
fn systemd_unit_is_sandboxed_and_its_command_serves() {
    let unit = repo_file("contrib/pareco.service");
    let settings: Vec<(&str, &str)> =
        unit.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split_once('=')).collect();
    let has = |key: &str, value: &str| settings.iter().any(|&(k, v)| k == key && v == value);
    for (key, value) in [
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("ReadWritePaths", "/srv/pareco"),
        ("User", "pareco"),
        ("LoadCredential", "token:/etc/pareco/token"),
    ] {
        assert!(has(key, value), "{key}={value} missing");
    }
    let exec = settings.iter().find(|(k, _)| *k == "ExecStart").expect("ExecStart").1;
    let words: Vec<&str> = exec.split_whitespace().collect();
    assert!(
        !words.iter().any(|w| *w == "-a" || w.starts_with("--token=") || *w == "--token"),
        "token on the command line"
    );
    assert_eq!(words[0], "/usr/local/bin/pareco");

    // The command, with the unit's paths and specifiers made local.
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("token"), "unit-token\n").unwrap();
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let args: Vec<String> = words[1..]
        .iter()
        .map(|w| match *w {
            "/srv/pareco" => root.path().to_str().unwrap().to_owned(),
            "0.0.0.0:4650" => "127.0.0.1:0".to_owned(),
            w => w.replace("%d", creds.path().to_str().unwrap()),
        })
        .collect();
    serves(&args, &[("XDG_DATA_HOME", state.path()), ("XDG_CACHE_HOME", state.path())]);

    // systemd finds nothing wrong with it, where systemd is installed (the
    // binary named where this one is; the man page is not installed here).
    let copy = tempfile::tempdir().unwrap();
    let local_unit = copy.path().join("pareco.service");
    std::fs::write(&local_unit, unit.replace("/usr/local/bin/pareco", BIN)).unwrap();
    if let Ok(out) = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&local_unit).output() {
        let said =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
    }
}

/// The JSON array of a Dockerfile instruction (`ENTRYPOINT ["a", "b"]`).
fn exec_form(dockerfile: &str, instruction: &str) -> Vec<String> {
    let line = dockerfile.lines().find(|l| l.starts_with(&format!("{instruction} "))).expect(instruction);
    serde_json::from_str(&line[instruction.len()..]).expect("exec form")
}

#[test]
fn dockerfile_runs_pareco_as_a_user_and_its_command_serves() {
    let dockerfile = repo_file("Dockerfile");
    let stages = dockerfile.lines().filter(|l| l.starts_with("FROM ")).count();
    assert_eq!(stages, 2, "multi-stage");
    assert!(dockerfile.lines().any(|l| l.starts_with("USER pareco")), "non-root user");
    assert!(dockerfile.contains("EXPOSE 4650") && dockerfile.contains("\"/data\""));
    assert_eq!(exec_form(&dockerfile, "ENTRYPOINT"), ["pareco"]);
    let state = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let args: Vec<String> = exec_form(&dockerfile, "CMD")
        .into_iter()
        .map(|w| match w.as_str() {
            "/data" => root.path().to_str().unwrap().to_owned(),
            "0.0.0.0:4650" => "127.0.0.1:0".to_owned(),
            _ => w,
        })
        .collect();
    serves(&args, &[("XDG_DATA_HOME", state.path()), ("XDG_CACHE_HOME", state.path())]);
    let ignore = repo_file(".dockerignore");
    assert!(ignore.lines().any(|l| l == "target/"), "the build context leaves target/ out");
}
