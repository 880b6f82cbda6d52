//! What the tests of `pareco ui` share: a `pareco ui` process and a
//! client of its API, and the hostile file names.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::util::*;

/// The file names no page may take for HTML.
pub const HOSTILE: [&str; 2] = ["<img src=x onerror=alert(1)>", "\"><script>alert(1)</script>"];

/// A `pareco ui` process on 127.0.0.1, its key, and everything it logged
/// and answered (to look for a token in).
pub struct Ui {
    child: Child,
    pub base: String,
    pub key: String,
    log: Arc<Mutex<String>>,
    answers: Mutex<String>,
    http: reqwest::Client,
}

impl Ui {
    pub fn start() -> Ui {
        Ui::start_with(Command::new(BIN))
    }

    /// Starts `pareco ui` with `command` (the binary, or a wrapper of it).
    pub fn start_with(mut command: Command) -> Ui {
        let mut child = command
            .args(["ui", "--bind", "127.0.0.1:0"])
            .env_remove("PARECO_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pareco ui");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let log = Arc::new(Mutex::new(String::new()));
        let url = loop {
            let line = lines.next().expect("pareco ui exited before listening").expect("read stderr");
            log.lock().unwrap().push_str(&format!("{line}\n"));
            if let Some(url) = line.strip_prefix("ui on ") {
                break url.to_owned();
            }
        };
        let kept = log.clone();
        std::thread::spawn(move || {
            lines.map_while(Result::ok).for_each(|l| kept.lock().unwrap().push_str(&format!("{l}\n")))
        });
        let (base, key) = url.split_once("/#key=").expect("the URL holds the key");
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Ui { child, base: base.to_owned(), key: key.to_owned(), log, answers: Mutex::default(), http }
    }

    /// What the process logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Every response body so far.
    pub fn answers(&self) -> String {
        self.answers.lock().unwrap().clone()
    }

    /// Sends a request with the key and `headers`; returns the status,
    /// the headers and the body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, String) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("authorization")) {
            request = request.header(AUTHORIZATION, format!("Bearer {}", self.key));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body.to_owned());
        }
        let response = request.send().await.expect("the UI answers");
        let (status, headers) = (response.status(), response.headers().clone());
        let text = response.text().await.expect("a body");
        self.answers.lock().unwrap().push_str(&format!("{text}\n"));
        (status, headers, text)
    }

    pub async fn json(&self, method: Method, path: &str, body: Option<&Value>) -> (StatusCode, Value) {
        let body = body.map(|b| b.to_string());
        let (status, _, text) = self.call(method, path, body.as_deref(), &[]).await;
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")))
    }

    /// Starts a run; returns its id.
    pub async fn start_run(&self, request: &Value) -> u64 {
        let (status, answer) = self.json(Method::POST, "/api/runs", Some(request)).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        answer["id"].as_u64().expect("an id")
    }

    /// Follows the run's events to its end; returns its last state and
    /// how many events came.
    pub async fn follow(&self, id: u64) -> (Value, usize) {
        let (status, headers, text) =
            self.call(Method::GET, &format!("/api/runs/{id}/events"), None, &[]).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!(headers[CONTENT_TYPE], "text/event-stream");
        let events: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
        assert!(text.lines().filter(|l| l.starts_with("event: ")).all(|l| l == "event: run"), "{text}");
        let last = serde_json::from_str(events.last().expect("at least one event")).expect("JSON");
        (last, events.len())
    }

    /// Polls the run until `ready` holds for it (within a minute).
    pub async fn until(&self, id: u64, ready: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let (_, run) = self.json(Method::GET, &format!("/api/runs/{id}"), None).await;
            if ready(&run) {
                return run;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "still waiting for run {id}: {run}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A path as a run's lines name it (as the engine prints paths: quotes,
/// backslashes and control characters escaped).
pub fn shown(path: &str) -> String {
    pareco::codec::RelPath::from_user(path).expect("a relative path").to_string()
}

/// A source tree with the hostile names among its files.
pub fn hostile_tree(root: &std::path::Path) {
    varied_tree(root, 64 << 10);
    for (i, name) in HOSTILE.iter().enumerate() {
        file(&root.join(name), &noise(5000, 70 + i as u64), 0o644, (1_600_000_000, 0));
    }
}
