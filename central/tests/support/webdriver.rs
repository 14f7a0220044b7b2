//! A real browser for the web UI tests: Debian's `chromium`, headless,
//! driven over W3C WebDriver by Debian's `chromium-driver` (`.ci/test.sh`
//! installs both). A few calls of the protocol, no client crate: sessions,
//! navigation, elements, clicks, typing, scripts, screenshots, keys.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub const TAB: char = '\u{E004}';
pub const ENTER: char = '\u{E007}';

fn find_program(names: &[&str]) -> Option<PathBuf> {
    for name in names {
        for dir in ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"] {
            let path = Path::new(dir).join(name);
            if path.exists() {
                return Some(path);
            }
        }
    }
    None
}

/// A headless Chromium session; the browser and its driver end on drop.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    /// Where downloads land.
    pub downloads: tempfile::TempDir,
    _profile: tempfile::TempDir,
}

/// One element of the page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver and a browser `width`×`height` (CSS pixels).
    pub async fn start(width: u32, height: u32) -> Browser {
        let driver_bin = find_program(&["chromedriver"]).expect(
            "chromedriver not found: install Debian's chromium and chromium-driver \
             (bash .ci/test.sh installs them)",
        );
        let chromium = find_program(&["chromium"])
            .expect("chromium not found: install Debian's chromium (bash .ci/test.sh installs it)");
        let port = super::mosquitto::free_port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = match http.get(format!("{base}/status")).send().await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .map(|v| v["value"]["ready"] == json!(true))
                    .unwrap_or(false),
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let downloads = tempfile::tempdir().expect("downloads dir");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--lang=en-GB",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.path(),
                    "download.prompt_for_download": false,
                    "intl.accept_languages": "en-GB,en",
                },
            },
        }}});
        let response: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session json");
        let session = response["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {response}"))
            .to_owned();
        let browser = Browser {
            driver,
            base,
            session,
            http,
            downloads,
            _profile: profile,
        };
        // Headless Chromium saves downloads only when told where.
        let dir = browser.downloads.path().display().to_string();
        browser
            .post(
                "chromium/send_command",
                json!({"cmd": "Browser.setDownloadBehavior",
                       "params": {"behavior": "allow", "downloadPath": dir}}),
            )
            .await;
        browser
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}/{path}", self.base, self.session)
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.send(path, self.http.post(self.url(path)).json(&body))
            .await
    }

    async fn get(&self, path: &str) -> Value {
        self.send(path, self.http.get(self.url(path))).await
    }

    /// A command's `value`.
    async fn send(&self, path: &str, request: reqwest::RequestBuilder) -> Value {
        let response: Value = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("webdriver {path}: {e}"))
            .json()
            .await
            .expect("webdriver json");
        response["value"].clone()
    }

    /// What the page shows, for a failure's message.
    async fn page_text(&self) -> Value {
        self.run("return document.body.innerText", vec![]).await
    }

    pub async fn goto(&self, url: &str) {
        let v = self.post("url", json!({"url": url})).await;
        assert!(v.is_null(), "navigate to {url}: {v}");
    }

    /// The page's URL now.
    pub async fn current_url(&self) -> String {
        self.get("url")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns
    /// its result. Elements go in and come out as [`Element`] JSON.
    pub async fn run(&self, script: &str, args: Vec<Value>) -> Value {
        let v = self
            .post("execute/sync", json!({"script": script, "args": args}))
            .await;
        if let Some(error) = v.get("error") {
            panic!("script failed: {error}: {}\n{script}", v["message"]);
        }
        v
    }

    /// Waits (up to 20 s) until `script` returns something truthy, and
    /// returns it.
    pub async fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.run(script, vec![]).await;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                let text = self.page_text().await;
                panic!("timed out waiting for {what}; the page says:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The first element matching `css`, waiting for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self
                .post("element", json!({"using": "css selector", "value": css}))
                .await;
            if let Some(id) = v.get(ELEMENT).and_then(Value::as_str) {
                return Element(id.to_owned());
            }
            if Instant::now() > deadline {
                let text = self.page_text().await;
                panic!("no element {css}; the page says:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks like a user (the driver scrolls it into view and refuses an
    /// element something else covers).
    pub async fn click(&self, el: &Element) {
        let v = self
            .post(&format!("element/{}/click", el.0), json!({}))
            .await;
        assert!(v.is_null(), "click: {v}");
    }

    pub async fn type_into(&self, el: &Element, text: &str) {
        let v = self
            .post(&format!("element/{}/value", el.0), json!({"text": text}))
            .await;
        assert!(v.is_null(), "type: {v}");
    }

    /// Presses keys on whatever has the focus.
    pub async fn press(&self, keys: &[char]) {
        let mut actions = Vec::new();
        for key in keys {
            actions.push(json!({"type": "keyDown", "value": key.to_string()}));
            actions.push(json!({"type": "keyUp", "value": key.to_string()}));
        }
        let v = self
            .post(
                "actions",
                json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
            )
            .await;
        assert!(v.is_null(), "keys: {v}");
    }

    pub async fn text(&self, el: &Element) -> String {
        self.get(&format!("element/{}/text", el.0))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The element as a script argument.
    pub fn arg(el: &Element) -> Value {
        json!({ ELEMENT: el.0 })
    }

    /// A PNG of the viewport, saved to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let v = self.get("screenshot").await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 screenshot"))
            .expect("decode screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("screenshot dir");
        std::fs::write(path, png).expect("write screenshot");
    }

    /// Waits for a finished download whose name ends with `suffix`.
    pub async fn wait_download(&self, suffix: &str) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for entry in std::fs::read_dir(self.downloads.path()).expect("downloads") {
                let path = entry.expect("entry").path();
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                if name.ends_with(suffix) {
                    return std::fs::read(&path).expect("read download");
                }
            }
            assert!(Instant::now() < deadline, "no download *{suffix}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the session (and Chromium with it), then the driver. Plain
        // HTTP on a socket: drop cannot await.
        use std::io::{Read as _, Write as _};
        let addr = self.base.trim_start_matches("http://").to_owned();
        if let Ok(mut socket) = std::net::TcpStream::connect(&addr) {
            let _ = socket.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                socket,
                "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session
            );
            let _ = socket.read_to_end(&mut Vec::new());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
