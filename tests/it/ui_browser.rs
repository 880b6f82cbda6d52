//! `pareco ui` in a real browser: headless Chromium driven through
//! chromedriver (WebDriver). Opens the page with its key, fills the form,
//! uploads to a real server and watches the run reach done (the mirror is
//! checked byte for byte), cancels a running one, and reads the errors of
//! a run whose hostile file names cannot be read: they show as text (no
//! alert, no element injected). Takes the README's screenshots: into
//! `docs/ui-*.png` with `PARECO_WRITE_SCREENSHOTS=1`, else into a
//! temporary directory. Skipped, saying so, without chromium and
//! chromedriver (`scripts/ci-deps.sh` installs them).

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::ui_kit::{hostile_tree, shown, Ui, HOSTILE};
use crate::util::*;

/// A chromedriver process on a free port of 127.0.0.1, in a process group
/// of its own with the browsers it starts (all ended with it, even when a
/// test fails before it closes its browser).
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    /// Starts chromedriver, or `None` when it or Chromium is missing.
    fn start() -> Option<Driver> {
        let found = |name: &str| {
            Command::new("which").arg(name).stdout(Stdio::null()).status().is_ok_and(|s| s.success())
        };
        if !found("chromedriver") || !found("chromium") {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let driver = Driver { child, port };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(driver)
    }

    async fn browser(&self) -> Client {
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,1100",
        ];
        let options = json!({ "args": args });
        let capabilities = [("goog:chromeOptions".to_owned(), options)].into_iter().collect();
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(group) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of the first element `css` finds, once `ready` holds for it
/// (within a minute).
async fn text_when(browser: &Client, css: &str, ready: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        if let Ok(element) = browser.find(Locator::Css(css)).await {
            let text = element.text().await.unwrap_or_default();
            if ready(&text) {
                return text;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(60), "still waiting for {css}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn fill(browser: &Client, id: &str, value: &str) {
    let field = browser.find(Locator::Id(id)).await.expect(id);
    field.clear().await.expect("clear");
    field.send_keys(value).await.expect("type");
}

/// Takes a screenshot of the page into `dir` as `ui-NAME.png`.
async fn screenshot(browser: &Client, dir: &Path, name: &str) {
    let png = browser.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG image");
    std::fs::write(dir.join(format!("ui-{name}.png")), png).expect("write the screenshot");
}

/// Nothing a transfer produced became HTML: no alert, no image, no script
/// but the page's own.
async fn nothing_injected(browser: &Client) {
    assert!(browser.get_alert_text().await.is_err(), "an alert is open");
    assert!(browser.find_all(Locator::Css("img")).await.unwrap().is_empty(), "an <img> was injected");
    assert_eq!(browser.find_all(Locator::Css("script")).await.unwrap().len(), 1, "a <script> was injected");
}

/// A directory the UI (as `nobody` when the tests run as root) may read.
fn readable_by_the_ui() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    set_mode(dir.path(), 0o755);
    dir
}

/// Gives the tree to `nobody` when the tests run as root, except the
/// hostile-named files, which the UI then may not read.
fn lock_hostile(root: &Path) {
    let hostile: Vec<PathBuf> = HOSTILE.iter().map(|n| root.join(n)).collect();
    if rustix::process::geteuid().is_root() {
        Command::new("chown").args(["-R", "65534:65534"]).arg(root).status().unwrap();
        for path in &hostile {
            Command::new("chown").arg("0:0").arg(path).status().unwrap();
            set_mode(path, 0o600);
        }
    } else {
        hostile.iter().for_each(|path| set_mode(path, 0o000));
    }
}

/// `pareco ui` as a user who cannot read what [`lock_hostile`] locked.
fn unprivileged_ui() -> Ui {
    Ui::start_with(crate::util::unprivileged_command())
}

#[tokio::test]
async fn the_page_runs_watches_and_cancels_uploads_and_shows_hostile_names_as_text() {
    let Some(driver) = Driver::start() else {
        // Straight to stderr, past the test harness's capture: a skip is
        // said plainly.
        let said = "SKIPPED ui_browser: chromium and chromedriver are not installed (scripts/ci-deps.sh installs them)\n";
        let _ = std::io::Write::write_all(&mut std::io::stderr(), said.as_bytes());
        return;
    };
    const TOKEN: &str = "browser-token-93be1";
    let scratch = tempfile::tempdir().unwrap();
    let shots = match std::env::var_os("PARECO_WRITE_SCREENSHOTS") {
        Some(_) => Path::new(env!("CARGO_MANIFEST_DIR")).join("docs"),
        None => scratch.path().to_owned(),
    };
    let server = Server::start(&["--token", TOKEN]);
    let proxy = pareco::testing::proxy::Proxy::start(server.port);
    let ui = unprivileged_ui();
    let browser = driver.browser().await;
    browser.goto(&format!("{}/#key={}", ui.base, ui.key)).await.expect("open the page");
    assert_eq!(browser.current_url().await.unwrap().path(), "/", "the key left the address");
    assert!(!browser.current_url().await.unwrap().as_str().contains(&ui.key));
    text_when(&browser, "#no-runs", |t| t.contains("No runs")).await;
    screenshot(&browser, &shots, "idle").await;

    // An upload to the server: watched to its end, the mirror exact.
    let src = readable_by_the_ui();
    hostile_tree(src.path());
    lock_hostile(src.path());
    let local = src.path().to_str().unwrap();
    for name in HOSTILE {
        // Readable for this run; locked again for the third.
        set_mode(&src.path().join(name), 0o644);
    }
    fill(&browser, "local", local).await;
    fill(&browser, "remote", &server.url("d")).await;
    fill(&browser, "token", TOKEN).await;
    fill(&browser, "chunk_size", "64k").await;
    browser.find(Locator::Id("start")).await.unwrap().click().await.unwrap();
    text_when(&browser, ".run[data-id='1'] .state", |t| t == "done").await;
    assert_same_tree(src.path(), &server.path("d"));
    let files = text_when(&browser, ".run[data-id='1'] .files", |t| !t.is_empty()).await;
    for name in HOSTILE {
        assert!(files.contains(&format!("created: {name}")), "{name} in:\n{files}");
    }
    assert_eq!(
        browser.find(Locator::Id("token")).await.unwrap().prop("value").await.unwrap().as_deref(),
        Some("")
    );
    nothing_injected(&browser).await;

    // A slow one, watched while it runs, then cancelled.
    let slow = readable_by_the_ui();
    for i in 0..64 {
        file(&slow.path().join(format!("f{i:02}")), &noise(512 << 10, i), 0o644, (1_600_000_000, 0));
    }
    proxy.throttle(256 << 10);
    fill(&browser, "local", slow.path().to_str().unwrap()).await;
    fill(&browser, "remote", &proxy.url("slow")).await;
    fill(&browser, "token", TOKEN).await;
    browser.find(Locator::Id("start")).await.unwrap().click().await.unwrap();
    text_when(&browser, ".run[data-id='2'] .numbers", |t| t.starts_with("sending") && !t.contains(" 0 B of"))
        .await;
    screenshot(&browser, &shots, "running").await;
    browser.find(Locator::Css(".run[data-id='2'] button.cancel")).await.unwrap().click().await.unwrap();
    text_when(&browser, ".run[data-id='2'] .state", |t| t == "cancelled").await;

    // Files the UI may not read: the run is done with errors, by name.
    lock_hostile(src.path());
    fill(&browser, "local", local).await;
    fill(&browser, "remote", &server.url("again")).await;
    fill(&browser, "token", TOKEN).await;
    browser.find(Locator::Id("start")).await.unwrap().click().await.unwrap();
    text_when(&browser, ".run[data-id='3'] .state", |t| t == "done with errors").await;
    let errors = text_when(&browser, ".run[data-id='3'] .errors", |t| !t.is_empty()).await;
    for name in HOSTILE {
        assert!(errors.contains(&shown(name)) && errors.contains("ermission denied"), "{name} in:\n{errors}");
    }
    nothing_injected(&browser).await;
    screenshot(&browser, &shots, "done-with-errors").await;

    let page = browser.source().await.unwrap();
    assert!(!page.contains(TOKEN), "the page shows the token");
    browser.close().await.unwrap();
    assert!(!ui.log().contains(TOKEN), "the log shows the token");
}
