//! A minimal W3C WebDriver client for testing the web console in a real
//! browser: headless Chromium driven by a `chromedriver` child process.
//! Commands go to it as JSON over plain HTTP/1.1 on 127.0.0.1, one
//! `Connection: close` request each, with std's `TcpStream`. A few dozen
//! commands a test don't need an HTTP client crate.
//!
//! Every call blocks. From a `#[tokio::test]`, use the multi-thread flavour
//! (`#[tokio::test(flavor = "multi_thread")]`). The test body then runs on
//! its own thread, so servers spawned on the runtime keep answering while
//! it waits for the browser. On a current-thread runtime, wrap the calls in
//! `tokio::task::spawn_blocking`; otherwise the server under test never
//! gets to answer.
//!
//! [`Browser::start`] needs `chromium` and `chromedriver` on `PATH`
//! (Debian: `apt-get install chromium chromium-driver`; `scripts/test`
//! installs them).

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use tempfile::TempDir;

/// How long `chromedriver` may take to report that it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one page may take to load before a command fails with
/// `timeout` (WebDriver's `pageLoad` timeout; its default is 300 s).
const PAGE_LOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a script passed to [`Browser::execute`] may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Socket timeout for one command, longer than the page load timeout so
/// that the driver's own timeout error comes first.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// How often [`Browser::wait_for`] and [`Browser::start`] look again.
const POLL: Duration = Duration::from_millis(50);
/// The key of a web element reference in WebDriver JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// What to do when `chromedriver` or `chromium` is missing.
const INSTALL: &str = "apt-get install chromium chromium-driver (scripts/test installs them)";

/// Headless Chromium in one WebDriver session, with the `chromedriver` that
/// drives it. Dropping it ends the session (which closes Chromium), stops
/// `chromedriver` and deletes the browser profile.
pub struct Browser {
    session: String,
    /// Chromium's process id (`goog:processID`), to kill it when ending
    /// the session fails: `chromedriver` leaves a live session's browser
    /// running when it is killed.
    browser_pid: Option<u32>,
    out_dir: PathBuf,
    driver: Driver,
    /// `--user-data-dir`: a fresh profile, so no cookie or cache outlives
    /// the test. Declared after `driver`, so it is deleted after Chromium
    /// has stopped.
    _profile: TempDir,
}

impl Browser {
    /// Starts `chromedriver` on a free port and opens a session in
    /// headless Chromium that accepts any TLS certificate (the test stacks'
    /// CAs are not in its trust store) and records every browser log entry.
    /// Screenshots go to `out_dir` (created if needed), next to
    /// `chromedriver.log`, the driver's output; downloads to
    /// `out_dir/downloads`.
    pub fn start(out_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(out_dir).with_context(|| format!("create {}", out_dir.display()))?;
        let profile = tempfile::tempdir()?;
        let downloads = out_dir.join("downloads");
        std::fs::create_dir_all(&downloads).with_context(|| format!("create {}", downloads.display()))?;
        let driver = Driver::start(&out_dir.join("chromedriver.log"))?;
        let capabilities = json!({
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "timeouts": {
                "implicit": 0,
                "pageLoad": PAGE_LOAD_TIMEOUT.as_millis() as u64,
                "script": SCRIPT_TIMEOUT.as_millis() as u64,
            },
            "goog:chromeOptions": {
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.display().to_string(),
                    "download.prompt_for_download": false,
                    "download.directory_upgrade": true,
                },
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let created = driver
            .command("POST", "/session", Some(&json!({ "capabilities": { "alwaysMatch": capabilities } })))
            .with_context(|| format!("create a Chromium session (is chromium installed? {INSTALL})"))?;
        let session = created["sessionId"].as_str().context("new session without a sessionId")?.to_owned();
        let browser_pid = created["capabilities"]["goog:processID"].as_u64().and_then(|p| u32::try_from(p).ok());
        let browser = Self { session, browser_pid, out_dir: out_dir.to_owned(), driver, _profile: profile };
        // Headless Chromium drops downloads unless told where to put them.
        browser.command(
            "POST",
            "chromium/send_command",
            Some(json!({ "cmd": "Page.setDownloadBehavior",
                         "params": { "behavior": "allow", "downloadPath": downloads.display().to_string() } })),
        )?;
        Ok(browser)
    }

    /// Opens `url` and waits until the page has loaded.
    pub fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.command("POST", "url", Some(json!({ "url": url }))).map(drop)
    }

    /// Goes back one page in the history.
    pub fn back(&self) -> anyhow::Result<()> {
        self.command("POST", "back", Some(json!({}))).map(drop)
    }

    /// The URL of the current page.
    pub fn current_url(&self) -> anyhow::Result<String> {
        string(self.command("GET", "url", None)?)
    }

    /// The current page's title.
    pub fn title(&self) -> anyhow::Result<String> {
        string(self.command("GET", "title", None)?)
    }

    /// The current page's HTML, serialised from the DOM (so not byte for
    /// byte what the server sent).
    pub fn source(&self) -> anyhow::Result<String> {
        string(self.command("GET", "source", None)?)
    }

    /// The first element matching the CSS selector `css`; an error naming
    /// the selector and the page when there is none.
    pub fn find(&self, css: &str) -> anyhow::Result<Element<'_>> {
        let found = self
            .command("POST", "element", Some(json!({ "using": "css selector", "value": css })))
            .with_context(|| format!("find {css:?} on {}", self.current_url().unwrap_or_default()))?;
        Element::from_reference(self, &found)
    }

    /// Every element matching the CSS selector `css`, in document order.
    pub fn find_all(&self, css: &str) -> anyhow::Result<Vec<Element<'_>>> {
        let found = self.command("POST", "elements", Some(json!({ "using": "css selector", "value": css })))?;
        let Value::Array(references) = found else { bail!("find_all {css:?}: not a list: {found}") };
        references.iter().map(|r| Element::from_reference(self, r)).collect()
    }

    /// Whether any element matches the CSS selector `css`.
    pub fn exists(&self, css: &str) -> anyhow::Result<bool> {
        Ok(!self.find_all(css)?.is_empty())
    }

    /// The first element matching `css`, looking again every 50 ms for up
    /// to `timeout`: for what a script adds after the page has loaded.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> anyhow::Result<Element<'_>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(element) = self.find_all(css)?.into_iter().next() {
                return Ok(element);
            }
            if Instant::now() >= deadline {
                bail!("no element matches {css:?} after {timeout:?} on {}", self.current_url()?);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Clears the field matching `css` and types `text` into it.
    pub fn fill(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let field = self.find(css)?;
        field.clear()?;
        field.send_keys(text)
    }

    /// Clicks the first element matching `css`. Chromium may answer
    /// before a navigation the click starts has begun; [`Browser::submit`]
    /// waits for the next page.
    pub fn click(&self, css: &str) -> anyhow::Result<()> {
        self.find(css)?.click()
    }

    /// Clicks the element matching `css` (a submit button or a link) and
    /// waits until another document has replaced this one and loaded,
    /// even when it has the same URL (a refused form shown again).
    pub fn submit(&self, css: &str) -> anyhow::Result<()> {
        self.execute("window.__skmOldPage = true;", &[])?;
        self.find(css)?.click()?;
        let deadline = Instant::now() + PAGE_LOAD_TIMEOUT;
        loop {
            // Between documents a script may fail; look again.
            let loaded = self
                .execute("return window.__skmOldPage !== true && document.readyState === 'complete';", &[])
                .ok()
                .and_then(|v| v.as_bool());
            if loaded == Some(true) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("clicking {css:?} loaded no new page within {PAGE_LOAD_TIMEOUT:?}");
            }
            std::thread::sleep(POLL);
        }
    }

    /// The cookies the browser holds for the current page's URL, HttpOnly
    /// ones included.
    pub fn cookies(&self) -> anyhow::Result<Vec<Cookie>> {
        Ok(serde_json::from_value(self.command("GET", "cookie", None)?)?)
    }

    /// Deletes every cookie visible to the current page.
    pub fn delete_cookies(&self) -> anyhow::Result<()> {
        self.command("DELETE", "cookie", None).map(drop)
    }

    /// Saves a PNG of the viewport as `<out_dir>/<name>.png`; returns its
    /// path.
    pub fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = base64::engine::general_purpose::STANDARD
            .decode(string(self.command("GET", "screenshot", None)?)?)
            .context("screenshot is not base64")?;
        let path = self.out_dir.join(format!("{name}.png"));
        std::fs::write(&path, png).with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }

    /// Runs `script` as the body of a function in the page, with `args` as
    /// its `arguments`; the answer is what it returns, as JSON.
    pub fn execute(&self, script: &str, args: &[Value]) -> anyhow::Result<Value> {
        self.command("POST", "execute/sync", Some(json!({ "script": script, "args": args })))
    }

    /// The browser's log entries (console messages, CSP violations, failed
    /// loads) since the previous call: reading the log empties it.
    pub fn browser_log(&self) -> anyhow::Result<Vec<LogEntry>> {
        let body = json!({ "type": "browser" });
        let entries = match self.command("POST", "se/log", Some(body.clone())) {
            Err(e) if e.downcast_ref::<WebDriverError>().is_some_and(|e| e.error == "unknown command") => {
                self.command("POST", "log", Some(body))?
            }
            other => other?,
        };
        Ok(serde_json::from_value(entries)?)
    }

    /// One command of this session: `path` is relative to
    /// `/session/{id}/`.
    fn command(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        self.driver.command(method, &format!("/session/{}/{path}", self.session), body.as_ref())
    }
}

impl fmt::Debug for Browser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Browser").field("session", &self.session).field("port", &self.driver.port).finish()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let ended = self.driver.command("DELETE", &format!("/session/{}", self.session), None);
        if ended.is_err()
            && let Some(pid) = self.browser_pid.and_then(|p| rustix::process::Pid::from_raw(p as i32))
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// An element of the current page (a WebDriver element reference). It
/// goes stale when the page it is on is left.
#[derive(Debug)]
pub struct Element<'b> {
    browser: &'b Browser,
    id: String,
}

impl<'b> Element<'b> {
    fn from_reference(browser: &'b Browser, reference: &Value) -> anyhow::Result<Self> {
        let id = reference[ELEMENT_KEY].as_str().with_context(|| format!("not an element reference: {reference}"))?;
        Ok(Self { browser, id: id.to_owned() })
    }

    /// Clicks the element's centre, as a user would (an error when
    /// something else covers it).
    pub fn click(&self) -> anyhow::Result<()> {
        self.command("POST", "click", Some(json!({}))).map(drop)
    }

    /// Types `text` into the element, after what it already holds.
    pub fn send_keys(&self, text: &str) -> anyhow::Result<()> {
        self.command("POST", "value", Some(json!({ "text": text }))).map(drop)
    }

    /// Empties an input or textarea.
    pub fn clear(&self) -> anyhow::Result<()> {
        self.command("POST", "clear", Some(json!({}))).map(drop)
    }

    /// The element's rendered text.
    pub fn text(&self) -> anyhow::Result<String> {
        string(self.command("GET", "text", None)?)
    }

    /// The HTML attribute `name` as written in the markup; `None` when it
    /// is absent.
    pub fn attr(&self, name: &str) -> anyhow::Result<Option<String>> {
        match self.command("GET", &format!("attribute/{name}"), None)? {
            Value::Null => Ok(None),
            value => string(value).map(Some),
        }
    }

    /// The DOM property `name` (e.g. `value` of an input, which follows
    /// typing, where the attribute doesn't).
    pub fn property(&self, name: &str) -> anyhow::Result<Value> {
        self.command("GET", &format!("property/{name}"), None)
    }

    fn command(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        self.browser.command(method, &format!("element/{}/{path}", self.id), body)
    }
}

/// A cookie as `chromedriver` reports it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Cookie {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: String,
    /// `Path`.
    #[serde(default)]
    pub path: Option<String>,
    /// The host it belongs to (`Domain`, or the host that set it).
    #[serde(default)]
    pub domain: Option<String>,
    /// `Secure`.
    #[serde(default)]
    pub secure: bool,
    /// `HttpOnly`.
    #[serde(default, rename = "httpOnly")]
    pub http_only: bool,
    /// `SameSite`: `Strict`, `Lax` or `None`.
    #[serde(default, rename = "sameSite")]
    pub same_site: Option<String>,
    /// When it expires, in seconds since the Unix epoch; `None` for a
    /// session cookie.
    #[serde(default)]
    pub expiry: Option<u64>,
}

/// One entry of the browser's log.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct LogEntry {
    /// `SEVERE`, `WARNING`, `INFO` or `DEBUG`.
    pub level: String,
    /// The text, starting with the URL of the page or script it is about.
    pub message: String,
    /// Where it comes from: `security` (CSP violations), `network` (failed
    /// loads), `console-api` (`console.log`), `javascript` (uncaught errors).
    #[serde(default)]
    pub source: Option<String>,
}

/// A command `chromedriver` answered with an error: the W3C `error` code
/// (`no such element`, `timeout`, …) and its `message`.
#[derive(Debug)]
pub struct WebDriverError {
    /// The command, as `METHOD path`.
    pub command: String,
    /// The HTTP status of the answer.
    pub status: u16,
    /// The WebDriver error code.
    pub error: String,
    /// What the driver says about it.
    pub message: String,
}

impl fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebDriver {}: {}: {}", self.command, self.error, self.message)
    }
}

impl std::error::Error for WebDriverError {}

/// The `chromedriver` child process, stopped on drop.
struct Driver {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Driver {
    /// Starts it on a free port, its output going to `log`, and waits until
    /// `GET /status` says it is ready.
    fn start(log: &Path) -> anyhow::Result<Self> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port();
        let out = File::create(log).with_context(|| format!("create {}", log.display()))?;
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => anyhow!("chromedriver is not on PATH: {INSTALL}"),
                _ => anyhow!(e).context("start chromedriver"),
            })?;
        let mut driver = Self { child, port, log: log.to_owned() };
        driver.wait_ready()?;
        Ok(driver)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("chromedriver exited ({status}) before it was ready: {}", self.output());
            }
            if let Ok(status) = self.command("GET", "/status", None)
                && status["ready"] == Value::Bool(true)
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("chromedriver not ready after {READY_TIMEOUT:?}: {}", self.output());
            }
            std::thread::sleep(POLL);
        }
    }

    /// What `chromedriver` has written so far, for error messages.
    fn output(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        format!("{} says: {}", self.log.display(), text.trim())
    }

    /// Sends one command and returns the `value` of a successful answer.
    fn command(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let (status, answer) =
            http(self.port, method, path, body).with_context(|| format!("chromedriver {method} {path}"))?;
        let mut answer: Value = serde_json::from_slice(&answer)
            .with_context(|| format!("chromedriver {method} {path}: not JSON: {}", String::from_utf8_lossy(&answer)))?;
        let value = answer["value"].take();
        if status == 200 {
            return Ok(value);
        }
        let field = |name: &str| value[name].as_str().unwrap_or_default().to_owned();
        Err(WebDriverError {
            command: format!("{method} {path}"),
            status,
            error: field("error"),
            message: field("message"),
        }
        .into())
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port`; the answer's status and body.
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<(u16, Vec<u8>)> {
    let body = body.map(serde_json::to_vec).transpose()?.unwrap_or_default();
    let mut tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes())?;
    tcp.write_all(&body)?;
    let mut reader = BufReader::new(tcp);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP status line: {line:?}"))?;
    let mut length = None;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = Some(value.trim().parse::<usize>().context("Content-Length")?);
        }
    }
    let mut answer = Vec::new();
    match length {
        Some(n) => {
            answer.resize(n, 0);
            reader.read_exact(&mut answer)?;
        }
        None => {
            reader.read_to_end(&mut answer)?;
        }
    }
    Ok((status, answer))
}

/// A JSON string's text.
fn string(value: Value) -> anyhow::Result<String> {
    match value {
        Value::String(s) => Ok(s),
        other => bail!("expected a string, got {other}"),
    }
}
