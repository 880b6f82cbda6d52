//! `pareco ui`, through its JSON API against the real binary: every
//! endpoint and every refusal (no key, wrong key, another origin, another
//! host, bad JSON, bad options), runs that fail, succeed and
//! are cancelled, hostile file names returned as JSON strings, and a
//! transfer token that never comes back in a response, an event or a log
//! line.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use reqwest::header::{CONTENT_TYPE, ORIGIN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::ui_kit::*;
use crate::util::*;

fn upload(local: &std::path::Path, remote: &str) -> Value {
    json!({ "direction": "send", "local": local, "remote": remote, "chunk_size": "64k", "connections": 4 })
}

#[tokio::test]
async fn without_the_key_or_with_a_wrong_one_every_api_request_is_401_with_the_security_headers() {
    let ui = Ui::start();
    let wrong = format!("Bearer {}", "0".repeat(64));
    let right = format!("Bearer {}", ui.key);
    // A cookie, even with the right key, is no key: a browser would send a
    // host's cookies to every port of it, another user's server included.
    let port = ui.base.rsplit(':').next().unwrap();
    let cookies = [format!("pareco_ui_{port}={}", ui.key), format!("key={}", ui.key)];
    let body = upload(std::path::Path::new("/tmp"), "pareco://127.0.0.1:1/d").to_string();
    for (method, path) in [
        (Method::GET, "/api/runs"),
        (Method::POST, "/api/runs"),
        (Method::GET, "/api/runs/1"),
        (Method::GET, "/api/runs/1/events"),
        (Method::DELETE, "/api/runs/1"),
        (Method::GET, "/?key=0123"),
    ] {
        let mut tries = vec![vec![("authorization", "")], vec![("authorization", wrong.as_str())]];
        tries.extend(cookies.iter().map(|c| vec![("authorization", ""), ("cookie", c.as_str())]));
        if path == "/?key=0123" {
            // The key in the query is not read, and not traded for anything.
            tries = vec![vec![("authorization", "")]];
        }
        for headers in tries {
            let (status, got, text) = ui.call(method.clone(), path, Some(&body), &headers).await;
            if path == "/?key=0123" {
                assert_eq!(status, StatusCode::OK, "the page, as to anyone");
                assert!(got.get("set-cookie").is_none(), "no cookie is ever set");
                continue;
            }
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} with {headers:?}: {text}");
            assert!(text.contains("key"), "{text}");
            assert!(got["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
        }
    }
    let (status, _, _) = ui.call(Method::GET, "/api/runs", None, &[("authorization", right.as_str())]).await;
    assert_eq!(status, StatusCode::OK);
    let (_, runs) = ui.json(Method::GET, "/api/runs", None).await;
    assert_eq!(runs, json!([]), "no run was started");
}

#[tokio::test]
async fn the_page_is_served_without_the_key_holding_nothing_secret_with_a_strict_policy() {
    let ui = Ui::start();
    for (path, kind) in [("/", "text/html"), ("/app.js", "text/javascript"), ("/app.css", "text/css")] {
        let (status, headers, body) = ui.call(Method::GET, path, None, &[("authorization", "")]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(headers[CONTENT_TYPE].to_str().unwrap().starts_with(kind), "{path}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert!(!body.contains(&ui.key), "{path} shows the key");
    }
    let (_, _, script) = ui.call(Method::GET, "/app.js", None, &[]).await;
    assert!(!script.contains("innerHTML") && !script.contains("insertAdjacentHTML"), "text only");
    let (status, _, _) = ui.call(Method::GET, "/nothing", None, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_state_changing_request_from_another_origin_or_host_is_403() {
    let server = Server::start(&[]);
    let src = tempfile::tempdir().unwrap();
    file(&src.path().join("f"), b"x", 0o644, (1_600_000_000, 0));
    let ui = Ui::start();
    let body = upload(src.path(), &server.url("d")).to_string();
    let host = ui.base.trim_start_matches("http://").to_owned();
    let foreign = [("origin", "http://evil.example"), ("origin", "null")];
    for header in foreign.iter().chain([&("sec-fetch-site", "cross-site")]) {
        let (status, _, text) = ui.call(Method::POST, "/api/runs", Some(&body), &[*header]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{header:?}: {text}");
        let (status, _, _) = ui.call(Method::DELETE, "/api/runs/1", None, &[*header]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{header:?}");
    }
    let (status, _, text) = ui.call(Method::GET, "/api/runs", None, &[("host", "evil.example")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a rebinding page's Host: {text}");
    let (_, runs) = ui.json(Method::GET, "/api/runs", None).await;
    assert_eq!(runs, json!([]), "no run was started");
    // The page's own origin may.
    let own = format!("http://{host}");
    let (status, _, text) = ui.call(Method::POST, "/api/runs", Some(&body), &[(ORIGIN.as_str(), &own)]).await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let (end, _) = ui.follow(1).await;
    assert_eq!(end["state"], "done", "{end}");
    assert_same_tree(src.path(), &server.path("d"));
}

#[tokio::test]
async fn bad_requests_are_400_with_one_line_saying_why() {
    let ui = Ui::start();
    let good = upload(std::path::Path::new("/tmp"), "pareco://127.0.0.1:1/d");
    let with = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body.to_string()
    };
    let cases = [
        ("{\"direction\": ".to_owned(), "EOF"),
        ("[1, 2]".to_owned(), "invalid type"),
        (with("surprise", json!(1)), "unknown field"),
        (with("direction", json!("sideways")), "neither \"send\" nor \"recv\""),
        (with("remote", json!("http://host/x")), "pareco://"),
        (with("connections", json!(0)), "connections"),
        (with("chunk_size", json!("1G")), "outside 1 KiB to 64 MiB"),
        (with("hash", json!("md5")), "unknown digest"),
        (with("include", json!(["a[b"])), "a[b"),
        (with("bwlimit", json!("fast")), "bwlimit:"),
        (with("bwlimit", json!(100)), "below the least, 1k"),
        (with("tls_fingerprint", json!("sha256:00")), "tls_fingerprint:"),
        (with("tls_fingerprint", json!(format!("sha256:{}", "0".repeat(64)))), "needs a pareco+tls://"),
    ];
    for (body, why) in cases {
        let (status, _, text) = ui.call(Method::POST, "/api/runs", Some(&body), &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {text}");
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert!(answer["error"].as_str().unwrap().contains(why), "{body}: {text}");
    }
    let (_, runs) = ui.json(Method::GET, "/api/runs", None).await;
    assert_eq!(runs, json!([]), "no run was started");
    let (status, _) = ui.json(Method::GET, "/api/runs/7", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = ui.json(Method::GET, "/api/runs/x/events", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_local_directory_that_does_not_exist_fails_the_run_by_name_and_the_ui_serves_on() {
    let server = Server::start(&[]);
    let missing = std::path::Path::new("/nonexistent").join(HOSTILE[0]);
    let ui = Ui::start();
    let id = ui.start_run(&upload(&missing, &server.url("d"))).await;
    let (end, _) = ui.follow(id).await;
    assert_eq!(end["state"], "failed", "{end}");
    let message = end["message"].as_str().unwrap();
    assert!(message.contains(&*missing.to_string_lossy()) && message.contains("No such file"), "{end}");
    assert_eq!(end["errors"], json!([message]));
    assert_eq!(end["local"], json!(missing), "the name comes back as a string, as it is");
    assert!(end["report"].is_null());
    let (status, runs) = ui.json(Method::GET, "/api/runs", None).await;
    assert_eq!((status, runs.as_array().unwrap().len()), (StatusCode::OK, 1));
}

#[tokio::test]
async fn an_upload_and_a_download_mirror_the_tree_and_the_token_never_comes_back() {
    const TOKEN: &str = "sekrit-token-4f1c9a";
    let server = Server::start(&["--token", TOKEN]);
    let src = tempfile::tempdir().unwrap();
    hostile_tree(src.path());
    let ui = Ui::start();
    let mut send = upload(src.path(), &server.url("d"));
    send["token"] = json!(TOKEN);
    let id = ui.start_run(&send).await;
    let (end, events) = ui.follow(id).await;
    assert!(events >= 1);
    assert_eq!(end["state"], "done", "{end}");
    assert_eq!(
        (end["report"]["errors"].as_u64(), end["errors"].as_array().map(Vec::len)),
        (Some(0), Some(0))
    );
    assert_eq!(end["report"]["files_total"], end["report"]["files_transferred"]);
    let progress = &end["progress"];
    assert_eq!(progress["bytes_done"], progress["bytes_total"]);
    assert_eq!((&progress["totals_final"], &progress["phase"]), (&json!(true), &json!("ended")));
    assert_same_tree(src.path(), &server.path("d"));
    // The hostile names come back as they are, as JSON strings.
    let files: Vec<(&str, &str)> = end["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap(), f["outcome"].as_str().unwrap()))
        .collect();
    for name in HOSTILE {
        assert!(files.contains(&(name, "created")), "{name} in {files:?}");
    }
    // And a download of it.
    let dst = tempfile::tempdir().unwrap();
    let recv = json!({ "direction": "recv", "local": dst.path().join("copy"), "remote": server.url("d"), "token": TOKEN, "hash": "xxh128" });
    let id = ui.start_run(&recv).await;
    let (end, _) = ui.follow(id).await;
    assert_eq!(end["state"], "done", "{end}");
    assert_same_tree(src.path(), &dst.path().join("copy"));
    let (_, runs) = ui.json(Method::GET, "/api/runs", None).await;
    assert_eq!(runs.as_array().unwrap().len(), 2);
    // A wrong token fails the run, and is not shown either.
    let mut wrong = send.clone();
    wrong["token"] = json!("wrong-token-77");
    let id = ui.start_run(&wrong).await;
    let (end, _) = ui.follow(id).await;
    assert_eq!(end["state"], "failed", "{end}");
    let (answers, log) = (ui.answers(), ui.log());
    for token in [TOKEN, "wrong-token-77"] {
        assert!(!answers.contains(token), "a response shows the token");
        assert!(!log.contains(token), "the log shows the token:\n{log}");
    }
}

#[tokio::test]
async fn a_running_run_is_cancelled_and_an_ended_one_cannot_be() {
    let server = Server::start(&[]);
    let proxy = pareco::testing::proxy::Proxy::start(server.port);
    proxy.throttle(256 << 10);
    let src = tempfile::tempdir().unwrap();
    // Files count as done when they end: many of them show progress.
    for i in 0..64 {
        file(&src.path().join(format!("f{i:02}")), &noise(512 << 10, i), 0o644, (1_600_000_000, 0));
    }
    let ui = Ui::start();
    let id = ui.start_run(&upload(src.path(), &proxy.url("d"))).await;
    let running = ui.until(id, |run| run["progress"]["bytes_done"].as_u64() > Some(0)).await;
    assert_eq!(running["state"], "running");
    // The engine's own phase, while data moves.
    let phase = running["progress"]["phase"].as_str().unwrap();
    assert!(["listing", "comparing", "sending"].contains(&phase), "{running}");
    if running["progress"]["totals_final"] == true {
        assert_eq!(running["progress"]["bytes_total"], 64 * (512 << 10), "{running}");
    }
    let (status, _) = ui.json(Method::DELETE, &format!("/api/runs/{id}"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (end, _) = ui.follow(id).await;
    assert_eq!(end["state"], "cancelled", "{end}");
    let (status, answer) = ui.json(Method::DELETE, &format!("/api/runs/{id}"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    // Nothing torn under a final name: what arrived is whole.
    let arrived = std::fs::read_dir(server.path("d")).unwrap().filter_map(Result::ok).map(|e| e.file_name());
    let mut whole = 0;
    for name in arrived.filter(|n| n.to_string_lossy().starts_with('f')) {
        assert_eq!(
            std::fs::read(server.path("d").join(&name)).unwrap(),
            std::fs::read(src.path().join(&name)).unwrap()
        );
        whole += 1;
    }
    assert!(whole < 64, "cancelled before the end");
}

#[test]
fn bound_beyond_loopback_it_warns_who_can_use_it() {
    let mut child = Command::new(BIN)
        .args(["ui", "--bind", "0.0.0.0:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pareco ui");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    let url = loop {
        let line = lines.next().expect("pareco ui exited").unwrap();
        seen.push_str(&format!("{line}\n"));
        if let Some(url) = line.strip_prefix("ui on ") {
            break url.to_owned();
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.contains("not on loopback") && seen.contains("read and write files as this user"), "{seen}");
    assert!(url.starts_with("http://127.0.0.1:") && url.contains("/#key="), "{url}");
}

#[tokio::test]
async fn a_dry_run_and_a_capped_run_are_the_command_lines() {
    let server = Server::start(&[]);
    let src = tempfile::tempdir().unwrap();
    hostile_tree(src.path());
    let ui = Ui::start();
    // A dry run tells what it would create and makes nothing.
    let mut dry = upload(src.path(), &server.url("d"));
    dry["dry_run"] = json!(true);
    let (end, _) = ui.follow(ui.start_run(&dry).await).await;
    assert_eq!(end["state"], "done", "{end}");
    assert!(!server.path("d").exists(), "the dry run made the destination");
    let files = end["files"].as_array().unwrap();
    assert!(!files.is_empty() && files.iter().all(|f| f["outcome"] == "created"), "{end}");
    let would = end["report"]["files_transferred"].clone();
    // A capped run arrives whole, and its report says the cap.
    let mut capped = upload(src.path(), &server.url("d"));
    capped["bwlimit"] = json!("64M");
    let (end, _) = ui.follow(ui.start_run(&capped).await).await;
    assert_eq!(end["state"], "done", "{end}");
    assert_eq!(end["report"]["bwlimit"]["bytes_per_s"], 64 << 20, "{end}");
    assert_eq!(end["report"]["files_transferred"], would);
    assert_same_tree(src.path(), &server.path("d"));
}

/// Each run has a thread, a runtime and its connections: a few go at once,
/// and another waits for one of them to end.
#[tokio::test]
async fn at_most_sixteen_runs_go_at_once() {
    // A "server" that takes connections and never answers: runs stay up.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let remote = format!("pareco://127.0.0.1:{}/d", silent.local_addr().unwrap().port());
    let src = tempfile::tempdir().unwrap();
    let ui = Ui::start();
    let mut ids = Vec::new();
    for _ in 0..16 {
        ids.push(ui.start_run(&upload(src.path(), &remote)).await);
    }
    let (status, answer) = ui.json(Method::POST, "/api/runs", Some(&upload(src.path(), &remote))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("16 runs are going"), "{answer}");
    for id in &ids {
        ui.json(Method::DELETE, &format!("/api/runs/{id}"), None).await;
    }
    ui.follow(ids[0]).await;
    let (status, answer) = ui.json(Method::POST, "/api/runs", Some(&upload(src.path(), &remote))).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}
