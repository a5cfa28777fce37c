//! A minimal W3C WebDriver client for Debian's `chromedriver` driving headless Chromium:
//! start the driver, start a browser with the flags these machines need, load a page, run
//! scripts, and read a page's state until it settles. HTTP/1.1 over a plain TcpStream, one
//! request per connection; every wait is bounded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The W3C WebDriver endpoint that starts a browser; each one is addressed below it.
const NEW_BROWSER: &str = "/session";

/// A running chromedriver and the one browser it started; both end on drop.
pub struct Browser {
    driver: Child,
    port: u16,
    /// The browser's id in chromedriver.
    id: String,
    _profile: tempfile::TempDir,
}

/// Chromium with WebGPU on its software adapter (SwiftShader), or with WebGPU off.
pub enum Gpu {
    SwiftShader,
    Off,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> std::io::Result<Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(900)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    // chromedriver keeps the socket open after its answer: read the headers, then exactly
    // Content-Length bytes.
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    let body_start = loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::other("chromedriver closed the connection"));
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let headers = String::from_utf8_lossy(&raw[..body_start]).to_ascii_lowercase();
    let length = headers
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .ok_or_else(|| std::io::Error::other("an answer without Content-Length"))?;
    while raw.len() < body_start + length {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let payload = String::from_utf8_lossy(&raw[body_start..]);
    let start = payload.find('{').unwrap_or(0);
    let end = payload.rfind('}').map_or(payload.len(), |e| e + 1);
    serde_json::from_str(&payload[start..end]).map_err(std::io::Error::other)
}

impl Browser {
    /// Starts chromedriver and a headless Chromium (a fresh profile).
    pub fn start(gpu: Gpu) -> Browser {
        Browser::start_with(gpu, &[])
    }

    /// [`Browser::start`], with scripts run in every new document before the page's own.
    pub fn start_with(gpu: Gpu, before_load: &[&str]) -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(30);
        while http(port, "GET", "/status", None).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not start in 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--disable-dev-shm-usage",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        match gpu {
            Gpu::SwiftShader => {
                args.push("--enable-unsafe-webgpu".into());
                args.push("--use-webgpu-adapter=swiftshader".into());
            }
            Gpu::Off => args.push("--disable-features=WebGPU".into()),
        }
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium(), "args": args },
            "timeouts": { "script": 900_000, "pageLoad": 60_000 }
        }}});
        let reply = http(port, "POST", NEW_BROWSER, Some(&caps)).expect("a new browser");
        let id = reply["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver started no browser: {reply}"))
            .to_string();
        let mut b = Browser {
            driver,
            port,
            id,
            _profile: profile,
        };
        for source in before_load {
            b.cdp(
                "Page.addScriptToEvaluateOnNewDocument",
                json!({ "source": source }),
            );
        }
        b
    }

    fn call(&self, method: &str, what: &str, body: Option<&Value>) -> Value {
        let path = format!("{NEW_BROWSER}/{}/{what}", self.id);
        let reply = http(self.port, method, &path, body).expect("webdriver request");
        if reply["value"]["error"].is_string() {
            panic!("webdriver {what}: {}", reply["value"]);
        }
        reply["value"].clone()
    }

    fn cdp(&mut self, cmd: &str, params: Value) -> Value {
        self.call(
            "POST",
            "goog/cdp/execute",
            Some(&json!({ "cmd": cmd, "params": params })),
        )
    }

    pub fn open(&self, url: &str) {
        self.call("POST", "url", Some(&json!({ "url": url })));
    }

    /// Runs `script` (a function body; `arguments` as given) and returns what it returns.
    pub fn run(&self, script: &str) -> Value {
        self.call(
            "POST",
            "execute/sync",
            Some(&json!({ "script": script, "args": [] })),
        )
    }

    /// Runs `script` as an async function body and returns what its promise resolves to.
    pub fn run_async(&self, script: &str) -> Value {
        let wrapped = format!(
            "const done = arguments[arguments.length - 1];\
             (async () => {{ {script} }})().then(done, e => done({{ error: String(e) }}));"
        );
        self.call(
            "POST",
            "execute/async",
            Some(&json!({ "script": wrapped, "args": [] })),
        )
    }

    /// `window.distillState` once its phase is one of `until` (or `error`); panics after
    /// `limit`.
    pub fn wait_for_state(&self, until: &[&str], limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let state = self.run("return JSON.stringify(window.distillState || null);");
            let state: Value = serde_json::from_str(state.as_str().unwrap_or("null")).unwrap();
            let phase = state["phase"].as_str().unwrap_or("");
            if phase == "error" || until.contains(&phase) {
                return state;
            }
            assert!(
                Instant::now() < deadline,
                "the page did not reach {until:?} in {limit:?}; last state: {state}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http(
            self.port,
            "DELETE",
            &format!("{NEW_BROWSER}/{}", self.id),
            None,
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Debian's Chromium (or $CHROMIUM).
pub fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}
