//! The core service for tests: the real `leadgate serve` on a free
//! loopback port, and the HTTP calls the tests make to it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The running service; killed when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `leadgate serve` from `cmd` (a `leadgate` command in the
    /// test's directory, with its `leadgate.toml`) on a free port and waits
    /// until it is ready.
    pub fn start(cmd: Command) -> Server {
        Server::start_with(cmd, &[])
    }

    /// [`Server::start`] with more arguments for `serve`.
    pub fn start_with(mut cmd: Command, serve_args: &[&str]) -> Server {
        let mut child = cmd
            .args([
                "--config",
                "leadgate.toml",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--text-logs",
            ])
            .args(serve_args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(addr) = line.split("listening on ").nth(1) {
                        let _ = tx.send(addr.trim().to_string());
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(u) => u,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the server did not start: {}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        let s = Server { child, url, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if s.get("/readyz", None).0 == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "not ready: {}", s.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    pub fn logs(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Whether the server's log shows `needle` within `wait`: a line is
    /// written before the answer goes out, but the thread reading the
    /// server's output may take it in after the answer has arrived.
    pub fn logged(&self, needle: &str, wait: Duration) -> bool {
        let until = std::time::Instant::now() + wait;
        loop {
            if self.logs().contains(needle) {
                return true;
            }
            if std::time::Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into()
    }

    pub fn get(&self, path: &str, key: Option<&str>) -> (u16, serde_json::Value) {
        let mut r = Self::agent().get(format!("{}{path}", self.url));
        if let Some(k) = key {
            r = r.header("Authorization", format!("Bearer {k}"));
        }
        let mut resp = r.call().unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    /// POST with headers; returns status, headers we care about, body.
    pub fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, HashMap<String, String>, serde_json::Value) {
        let mut r = Self::agent().post(format!("{}{path}", self.url));
        let mut typed = false;
        for (k, v) in headers {
            typed |= k.eq_ignore_ascii_case("content-type");
            r = r.header(*k, *v);
        }
        if !typed {
            r = r.header("Content-Type", "application/json");
        }
        answer(r.send(body).unwrap())
    }

    pub fn post_leads(
        &self,
        key: &str,
        idem: Option<&str>,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let auth = format!("Bearer {key}");
        let mut h = vec![("Authorization", auth.as_str())];
        if let Some(i) = idem {
            h.push(("Idempotency-Key", i));
        }
        let (s, _, b) = self.post("/v1/leads", &h, body);
        (s, b)
    }

    /// Kills the process at once (no graceful shutdown): a crash.
    pub fn crash(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An answer's status, headers and JSON body (the text when it is not
/// JSON).
pub fn answer(
    mut resp: ureq::http::Response<ureq::Body>,
) -> (u16, HashMap<String, String>, serde_json::Value) {
    let status = resp.status().as_u16();
    let hs = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        hs,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// The fields a 422 answer names, errors and warnings both.
pub fn finding_fields(body: &serde_json::Value) -> Vec<String> {
    ["errors", "warnings"]
        .iter()
        .filter_map(|k| body[*k].as_array())
        .flatten()
        .filter_map(|e| e["field"].as_str().map(str::to_string))
        .collect()
}

/// A new API key of `tenant` (`leadgate keys create`).
pub fn key(dir: &Path, tenant: &str) -> String {
    let out = super::ok(
        dir,
        &[
            "--config",
            "leadgate.toml",
            "keys",
            "create",
            "--tenant",
            tenant,
        ],
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
