//! A minimal W3C WebDriver client over reqwest (already in the build), for
//! Debian's chromedriver + headless Chromium. It covers what the browser
//! test needs: a session, navigation, scripts, clicks, screenshots and the
//! browser console log (chromedriver's `se/log`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::util::in_ci;

/// Chromium and chromedriver as Debian installs them (`apt-get install chromium chromium-driver`).
pub fn find_browser() -> Option<(PathBuf, PathBuf)> {
    let driver = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    let browser = std::env::var_os("KEEL_CHROMIUM")
        .map(PathBuf::from)
        .into_iter()
        .chain(["/usr/lib/chromium/chromium", "/usr/bin/chromium"].map(PathBuf::from))
        .find(|p| p.is_file());
    match (driver, browser) {
        (Some(driver), Some(browser)) => Some((driver, browser)),
        _ => {
            assert!(
                !in_ci(),
                "CI=true but Chromium or chromedriver is missing (tests/run.sh installs chromium and chromium-driver)"
            );
            eprintln!("chromium/chromedriver not installed: skipping the browser test");
            None
        }
    }
}

/// A chromedriver process and one browser session; both end on drop.
pub struct Browser {
    client: reqwest::Client,
    base: String,
    driver: Child,
    /// The browser's main process, ended on drop if the session was not quit.
    browser_pid: Option<u64>,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium at 1280×900 with a fresh profile.
    pub async fn start(driver: &Path, browser: &Path) -> Browser {
        let port = free_port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .args(
                std::env::var("KEEL_CHROMEDRIVER_LOG")
                    .map(|path| vec![format!("--log-path={path}"), "--verbose".to_string()])
                    .unwrap_or_default(),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        let root = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(answer) = client.get(format!("{root}/status")).send().await
                && answer.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": browser.display().to_string(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let answer: Value = client
            .post(format!("{root}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session answer");
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_string();
        Browser {
            client,
            base: format!("{root}/session/{session}"),
            driver: child,
            browser_pid: answer["value"]["capabilities"]["goog:processID"].as_u64(),
            _profile: profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("webdriver {path}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("webdriver {path}: {e}"));
        if answer["value"]["error"].is_string() {
            panic!("webdriver {path}: {}", answer["value"]);
        }
        answer["value"].clone()
    }

    /// Navigates and waits for the load event (WebDriver's default).
    pub async fn open(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub async fn run(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Polls `script` until it returns something truthy (10 s at most).
    pub async fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let value = self.run(script, json!([])).await;
            let truthy = !(value.is_null()
                || value == json!(false)
                || value == json!(0)
                || value == json!(""));
            if truthy {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends a Chrome DevTools command (chromedriver's `goog/cdp/execute`).
    pub async fn cdp(&self, command: &str, params: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({"cmd": command, "params": params})),
        )
        .await
    }

    /// Clicks the first element matching a CSS selector.
    pub async fn click(&self, selector: &str) {
        let element = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": selector})),
            )
            .await;
        let id = element
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {selector}"))
            .to_string();
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Saves a PNG of the whole page (the window grown to the page's height).
    pub async fn screenshot(&self, path: &Path) {
        let height = self
            .run(
                "return Math.min(document.documentElement.scrollHeight, 6000);",
                json!([]),
            )
            .await
            .as_i64()
            .unwrap_or(900)
            .max(900);
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": 1280, "height": height})),
        )
        .await;
        let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .expect("screenshot is base64");
        std::fs::write(path, bytes).expect("write screenshot");
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": 1280, "height": 900})),
        )
        .await;
    }

    /// Console entries logged since the last call (level, message).
    pub async fn console(&self) -> Vec<(String, String)> {
        let entries = self
            .call(
                reqwest::Method::POST,
                "/se/log",
                Some(json!({"type": "browser"})),
            )
            .await;
        entries
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| {
                        (
                            e["level"].as_str().unwrap_or("").to_string(),
                            e["message"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Browser {
    /// Ends the session (the browser quits), then chromedriver.
    pub async fn quit(mut self) {
        if self.client.delete(&self.base).send().await.is_ok() {
            self.browser_pid = None;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A browser whose session was not quit (a failed assertion) would
        // outlive chromedriver: end its main process by its own pid.
        if let Some(pid) = self.browser_pid.filter(|pid| *pid > 1) {
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &pid.to_string()])
                .status();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
