//! A headless Chromium driven through ChromeDriver with the W3C WebDriver protocol (plain JSON
//! over HTTP). Both come from the system packages (`chromium`, `chromium-driver`); the processes
//! started here are killed by PID, descendants first, when the [`Browser`] is dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long ChromeDriver may take to answer, and a page to load.
const PATIENCE: Duration = Duration::from_secs(60);

/// A browser session. Dropping it ends the session and kills ChromeDriver and Chromium.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    profile: tempfile::TempDir,
}

impl Browser {
    /// Starts ChromeDriver and a headless Chromium session that records the browser's console
    /// log. Panics with what to install when either is missing.
    pub async fn start() -> Browser {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: the status page's browser test needs Debian's `{package}` \
                 package (`apt-get install chromium chromium-driver`; .ci/services installs it)"
            );
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start chromedriver");
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .tls_backend_rustls()
            .timeout(PATIENCE)
            .build()
            .unwrap();
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            http,
            profile,
        };
        browser.wait_ready().await;
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions",
                    format!("--user-data-dir={}", browser.profile.path().display()),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let answer = browser
            .call(reqwest::Method::POST, "/session", Some(capabilities))
            .await;
        browser.session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_owned();
        browser
    }

    async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let ready = self
                .http
                .get(format!("{}/status", self.base))
                .send()
                .await
                .ok()
                .map(|answer| answer.json::<Value>());
            if let Some(body) = ready
                && let Ok(body) = body.await
                && body["value"]["ready"] == true
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A WebDriver command; its `value`. Panics on a WebDriver error.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await.expect("chromedriver did not answer");
        let status = answer.status();
        let body: Value = answer
            .json()
            .await
            .expect("chromedriver's answer is not JSON");
        assert!(status.is_success(), "WebDriver {path}: {status}: {body}");
        body["value"].clone()
    }

    fn path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Opens `url` and waits until it has loaded.
    pub async fn open(&self, url: &str) {
        self.call(
            reqwest::Method::POST,
            &self.path("/url"),
            Some(json!({ "url": url })),
        )
        .await;
    }

    /// The page's title.
    pub async fn title(&self) -> String {
        let value = self
            .call(reqwest::Method::GET, &self.path("/title"), None)
            .await;
        value.as_str().unwrap_or_default().to_owned()
    }

    /// The rendered text of every element `selector` matches, in document order.
    pub async fn texts(&self, selector: &str) -> Vec<String> {
        let elements = self
            .call(
                reqwest::Method::POST,
                &self.path("/elements"),
                Some(json!({"using": "css selector", "value": selector})),
            )
            .await;
        let mut texts = Vec::new();
        for element in elements.as_array().cloned().unwrap_or_default() {
            // The W3C element reference key.
            let id = element["element-6066-11e4-a52e-4f735466cecf"]
                .as_str()
                .unwrap_or_else(|| panic!("not an element: {element}"))
                .to_owned();
            let text = self
                .call(
                    reqwest::Method::GET,
                    &self.path(&format!("/element/{id}/text")),
                    None,
                )
                .await;
            texts.push(text.as_str().unwrap_or_default().to_owned());
        }
        texts
    }

    /// The text of the first element `selector` matches, polled until `done` holds for it.
    pub async fn wait_text(
        &self,
        selector: &str,
        what: &str,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let text = self
                .texts(selector)
                .await
                .into_iter()
                .next()
                .unwrap_or_default();
            if done(&text) {
                return text;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; {selector} reads {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The browser's console log since the last call: `(level, message)`.
    pub async fn console(&self) -> Vec<(String, String)> {
        let entries = self
            .call(
                reqwest::Method::POST,
                &self.path("/se/log"),
                Some(json!({"type": "browser"})),
            )
            .await;
        entries
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|e| {
                (
                    e["level"].as_str().unwrap_or_default().to_owned(),
                    e["message"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// Ends the session (Chromium closes), then ChromeDriver is killed on drop.
    pub async fn close(self) {
        let _ = self
            .http
            .delete(format!("{}{}", self.base, self.path("")))
            .send()
            .await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Chromium and its helpers are ChromeDriver's descendants: kill them first, by PID,
        // whatever state the test ended in.
        let mut pids = descendants(self.driver.id());
        pids.reverse();
        for pid in pids {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Every descendant of `pid`, parents before their children.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // The command name may hold spaces and parentheses: the fields after its last `)`.
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            if let Some(parent) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
                parents.push((child, parent));
            }
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        i += 1;
    }
    found.remove(0);
    found
}

fn free_port() -> u16 {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    listener.local_addr().unwrap().port()
}
