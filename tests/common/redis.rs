//! A real `redis-server` for the scale-out tests, and wshub binaries to
//! run as separate nodes.
//!
//! [`RedisServer::start`] runs `redis-server` (the Debian package's
//! `/usr/bin/redis-server`, else the one on `PATH`) on a free loopback port,
//! without persistence, and waits until it answers `PING`. The guard kills it
//! on drop; [`RedisServer::stop`] and [`RedisServer::restart`] take it away
//! and bring it back on the same port (the fault tests). Nothing here needs
//! a Redis client library: readiness is a raw `PING\r\n` answered by `+PONG`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long `redis-server` may take to answer its first `PING`.
const REDIS_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the Debian package puts the server.
const REDIS_SERVER: &str = "/usr/bin/redis-server";

fn redis_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("REDIS_SERVER") {
        return path.into();
    }
    let debian = PathBuf::from(REDIS_SERVER);
    if debian.exists() {
        return debian;
    }
    if let Some(found) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("redis-server"))
            .find(|candidate| candidate.is_file())
    }) {
        return found;
    }
    panic!(
        "redis-server is not installed ({REDIS_SERVER} missing, none on PATH): \
         run scripts/test, which installs it (apt-get install redis-server), \
         or set REDIS_SERVER to its path"
    );
}

/// A free TCP port on 127.0.0.1 (free when this returns; nothing holds it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` process on 127.0.0.1; killed when dropped.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers `PING`.
    pub async fn start() -> RedisServer {
        // Another process may take the port between the probe and the
        // server's bind: try a few.
        let mut last_error = String::new();
        for _ in 0..5 {
            let mut server = RedisServer::not_started(free_port());
            match server.launch().await {
                Ok(()) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start redis-server: {last_error}");
    }

    /// Starts a server on `port` (e.g. one a node was already told about).
    pub async fn start_on(port: u16) -> RedisServer {
        let mut server = RedisServer::not_started(port);
        server
            .launch()
            .await
            .unwrap_or_else(|e| panic!("could not start redis-server on port {port}: {e}"));
        server
    }

    fn not_started(port: u16) -> RedisServer {
        RedisServer {
            port,
            child: None,
            dir: tempfile::tempdir().expect("temporary directory for redis-server"),
        }
    }

    /// `redis://127.0.0.1:PORT/0`
    pub fn url(&self) -> String {
        redis_url(self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (SIGKILL: every connection drops at once, as in a
    /// crash) and waits until the process is gone.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        }
    }

    /// Starts the server again on the same port, empty (no persistence),
    /// and waits until it answers `PING`.
    pub async fn restart(&mut self) {
        self.stop().await;
        let deadline = Instant::now() + REDIS_START_TIMEOUT;
        loop {
            match self.launch().await {
                Ok(()) => return,
                // The port can stay busy for a moment after the kill.
                Err(e) if Instant::now() < deadline => {
                    eprintln!("redis-server restart on {} failed, retrying: {e}", self.port);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("could not restart redis-server on port {}: {e}", self.port),
            }
        }
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    async fn launch(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "redis-server already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("redis.log"))
            .map_err(|e| format!("redis log file: {e}"))?;
        let mut child = Command::new(redis_server_binary())
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--daemonize", "no", "--protected-mode", "no", "--loglevel", "notice"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", redis_server_binary().display()))?;
        let deadline = Instant::now() + REDIS_START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("redis-server exited with {status}:\n{}", self.log()));
            }
            if ping(self.port).await {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "redis-server did not answer PING within {REDIS_START_TIMEOUT:?}:\n{}",
                    self.log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `redis://127.0.0.1:PORT/0`
pub fn redis_url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}/0")
}

/// True when something on 127.0.0.1:`port` answers `PING` with `+PONG`.
pub async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut reply = Vec::new();
        let mut chunk = [0u8; 64];
        while !reply.ends_with(b"\r\n") {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            reply.extend_from_slice(&chunk[..n]);
        }
        Some(reply.starts_with(b"+PONG"))
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// A `wshub` binary running as a node of its own (to be killed with -9).
pub struct WshubProcess {
    child: Option<Child>,
    pub addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl WshubProcess {
    /// Runs the binary with `--bind 127.0.0.1 --port 0 --log-format json`
    /// and `extra`, and waits for its "listening" log line (the address).
    /// `WSHUB_*` and `RUST_LOG` from the environment are not passed on.
    pub fn spawn(extra: &[&str]) -> WshubProcess {
        Self::spawn_with(super::wshub_command(), extra)
    }

    /// The same with `command`: the binary, or a wrapper that runs it with
    /// these arguments.
    pub fn spawn_with(mut command: Command, extra: &[&str]) -> WshubProcess {
        let mut child = command
            .args(["--bind", "127.0.0.1", "--port", "0", "--log-format", "json"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the wshub binary");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let kept = lines.clone();
        // Reads the log for as long as the process lives, so that a full
        // pipe never blocks it; the lines stay available to the test.
        std::thread::spawn(move || {
            let mut addr_tx = Some(addr_tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) {
                    if json["fields"]["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("listening on "))
                    {
                        if let (Some(tx), Some(addr)) = (addr_tx.take(), json["fields"]["addr"].as_str()) {
                            let _ = tx.send(addr.parse::<SocketAddr>().ok());
                        }
                    }
                }
                kept.lock().unwrap().push(line);
            }
        });
        let addr = match addr_rx.recv_timeout(Duration::from_secs(15)) {
            Ok(Some(addr)) => addr,
            outcome => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "wshub {extra:?} did not log \"listening\" with an address ({outcome:?}); its log:\n{}",
                    lines.lock().unwrap().join("\n")
                );
            }
        };
        WshubProcess {
            child: Some(child),
            addr,
            lines,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Its log lines so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits up to `limit` for a log line that satisfies `wanted`.
    pub async fn wait_for_log(&self, limit: Duration, wanted: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self.lines.lock().unwrap().iter().find(|l| wanted(l)) {
                return Some(line.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no goodbye to Redis, no close frames to clients.
    pub async fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9 wshub");
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        }
    }
}

impl Drop for WshubProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
