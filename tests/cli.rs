//! The binary's edge: bad flags and files stop start-up with a message
//! that names them (a file's line and key too); `--help` lists every option
//! with its default, grouped by topic, with examples; the start-up lines say
//! where to go and show settings as flags take them; a busy port is said
//! once; the log filter follows its documented precedence; SIGTERM shuts
//! down gracefully with exit status 0 and its last log lines written; a log
//! output nobody reads drops (and counts) lines instead of stalling
//! connections; at its open-files limit it keeps serving, logs, and accepts
//! again once descriptors free up.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

fn fails_with(args: &[&str], expected_status: i32, needle: &str) {
    let output = wshub_command().args(args).output().expect("run wshub");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(expected_status), "{args:?}: {stderr}");
    assert!(stderr.contains(needle), "{args:?} should mention {needle:?}: {stderr}");
}

#[test]
fn bad_flags_are_named() {
    fails_with(&["--port", "eighty"], 2, "--port");
    fails_with(&["--bind", "not-an-ip"], 2, "--bind");
    fails_with(&["--read-timeout", "soon"], 2, "--read-timeout");
    fails_with(&["--max-message-size", "12 parsecs"], 2, "--max-message-size");
    fails_with(&["--ping-interval", "70s"], 2, "--ping-interval");
    fails_with(&["--allowed-origin", "example.com"], 2, "--allowed-origin");
    fails_with(&["--no-such-flag"], 2, "--no-such-flag");
    fails_with(&["--tls-cert", "x.pem"], 2, "--tls-key");
    fails_with(&["--app", "bad id:key:secret"], 2, "--app: app id 'bad id'");
}

#[test]
fn bad_variables_are_named() {
    let output = wshub_command().env("WSHUB_PORT", "99999").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("--port"), "{stderr}");
}

#[test]
fn bad_files_are_named() {
    fails_with(
        &[
            "--tls-cert",
            "/nonexistent/wshub.crt",
            "--tls-key",
            "/nonexistent/wshub.key",
        ],
        1,
        "/nonexistent/wshub.crt",
    );
    fails_with(&["--config", "/nonexistent/wshub.toml"], 2, "/nonexistent/wshub.toml");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wshub.toml");
    std::fs::write(&path, "port = \"not a number\"\n").unwrap();
    fails_with(&["--config", path.to_str().unwrap()], 2, "wshub.toml");
}

#[test]
fn a_bad_config_file_is_named_with_its_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wshub.toml");
    let config = path.to_str().unwrap();
    std::fs::write(&path, "# wshub\nport = 9000\nmax-message-size = \"12 parsecs\"\n").unwrap();
    fails_with(
        &["--config", config],
        2,
        &format!("{config}, line 3, key 'max-message-size': invalid value '12 parsecs'"),
    );
    std::fs::write(&path, "port = 9000\nprot = 9001\n").unwrap();
    fails_with(
        &["--config", config],
        2,
        &format!("{config}, line 2, key 'prot': unknown key"),
    );
    std::fs::write(&path, "port = 9000\nbind = \"127.0.0.1\n").unwrap();
    fails_with(&["--config", config], 2, &format!("{config}, line 2: "));
}

/// Runs the binary on a port that is taken, so that it exits at once after
/// its first log lines; returns its exit status and stderr.
fn run_on_a_busy_port(extra: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let output = wshub_command()
        .args(["--bind", "127.0.0.1", "--port", &port, "--history", "none"])
        .args(extra)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run wshub");
    drop(taken);
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_busy_port_is_said_once_with_its_cause_once() {
    let (status, stderr) = run_on_a_busy_port(&[], &[]);
    assert_eq!(status, Some(1), "{stderr}");
    assert_eq!(stderr.matches("cannot listen on 127.0.0.1:").count(), 1, "{stderr}");
    assert_eq!(stderr.to_lowercase().matches("in use").count(), 1, "{stderr}");
    assert!(stderr.contains("--port"), "says what to do: {stderr}");
    assert!(!stderr.contains('\x1b'), "no colours into a pipe: {stderr:?}");
}

#[test]
fn rust_log_does_not_override_the_flag_or_variable_but_does_the_file() {
    let starts = |stderr: &str| stderr.contains("starting wshub");
    // Flag and WSHUB_LOG_LEVEL win over RUST_LOG.
    let (_, stderr) = run_on_a_busy_port(&["--log-level", "warn"], &[("RUST_LOG", "debug")]);
    assert!(!starts(&stderr) && stderr.contains("cannot listen"), "{stderr}");
    let (_, stderr) = run_on_a_busy_port(&[], &[("RUST_LOG", "debug"), ("WSHUB_LOG_LEVEL", "warn")]);
    assert!(!starts(&stderr) && stderr.contains("cannot listen"), "{stderr}");
    // RUST_LOG wins over the default and over the file, and says so.
    let (_, stderr) = run_on_a_busy_port(&[], &[("RUST_LOG", "warn")]);
    assert!(!starts(&stderr) && stderr.contains("cannot listen"), "{stderr}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wshub.toml");
    std::fs::write(&path, "log-level = \"warn\"\n").unwrap();
    let file = ["--config", path.to_str().unwrap()];
    let (_, stderr) = run_on_a_busy_port(&file, &[]);
    assert!(!starts(&stderr), "the file's level applies: {stderr}");
    let (_, stderr) = run_on_a_busy_port(&file, &[("RUST_LOG", "info")]);
    assert!(
        starts(&stderr) && stderr.contains("log_level=info (from RUST_LOG)"),
        "{stderr}"
    );
    // A RUST_LOG that is no filter is refused, not ignored.
    let (status, stderr) = run_on_a_busy_port(&[], &[("RUST_LOG", "wshub=loud")]);
    assert_eq!(status, Some(2), "{stderr}");
    assert!(stderr.contains("RUST_LOG"), "{stderr}");
}

/// Reads `stderr` lines until one contains `needle` (within 15 s).
fn line_with(stderr: &mut impl BufRead, needle: &str, seen: &mut Vec<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut line = String::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "no line with {needle:?} in:\n{}",
            seen.join("")
        );
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "exited; log:\n{}",
            seen.join("")
        );
        seen.push(line.clone());
        if line.contains(needle) {
            return line.clone();
        }
    }
}

#[tokio::test]
async fn start_up_lines_say_where_to_go_and_show_settings_as_flags_take_them() {
    for (bind, tls) in [("127.0.0.1", true), ("0.0.0.0", false)] {
        let mut args = vec!["--bind", bind, "--port", "0", "--history", "none"];
        if tls {
            args.push("--tls-self-signed");
        }
        let mut child = KillOnDrop(
            wshub_command()
                .args(&args)
                .stdin(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
        let mut seen = Vec::new();
        let starting = line_with(&mut stderr, "starting wshub", &mut seen);
        let listening = line_with(&mut stderr, "listening on ", &mut seen);
        let (http, ws) = if tls { ("https", "wss") } else { ("http", "ws") };
        let port: u16 = listening
            .split(&format!("{http}://127.0.0.1:"))
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("no {http}://127.0.0.1:PORT in {listening}"));
        let wanted = format!(
            "listening on {http}://127.0.0.1:{port} (page), {ws}://127.0.0.1:{port}/echo, {ws}://127.0.0.1:{port}/ws"
        );
        assert!(listening.contains(&wanted), "{listening}\nwanted {wanted}");
        assert_eq!(bind == "0.0.0.0", listening.contains("every interface"), "{listening}");
        let tls_value = if tls { "tls=self-signed" } else { "tls=off" };
        for wanted in [
            tls_value,
            "ping_interval=54s",
            "write_timeout=10s",
            "max_message_size=1MiB",
            "history=none",
        ] {
            assert!(starting.contains(wanted), "{wanted} in {starting}");
        }
        for debug_output in ["Some(", "None", "SelfSigned", "secs:", "\x1b"] {
            assert!(
                !starting.contains(debug_output) && !listening.contains(debug_output),
                "{debug_output:?} in {starting}{listening}"
            );
        }
        if !tls {
            // The address shown reaches the server.
            let mut client = connect(&format!("ws://127.0.0.1:{port}/echo")).await;
            send_text(&mut client, "here").await;
            assert_eq!(next_message(&mut client).await.into_text().unwrap(), "here");
        }
    }
}

/// Kills the process when the test ends, whichever way.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something accepts TCP connections on `addr`.
async fn wait_until_accepting(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One sample of `GET /metrics`.
async fn metric(addr: SocketAddr, series: &str) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut response))
        .await
        .expect("metrics in time")
        .unwrap();
    response
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in {response}"))
}

#[tokio::test]
async fn a_log_output_nobody_reads_drops_lines_instead_of_stalling_connections() {
    let port = common::redis::free_port();
    let mut child = KillOnDrop(
        wshub_command()
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--history", "none"])
            .args(["--log-format", "json", "--log-buffer-lines", "64"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Both pipes stay unread while connections come and go: 64 KiB of
    // pipe and 64 queued lines fill after a hundred-odd connections.
    let _stdout = child.0.stdout.take().unwrap();
    let stderr = child.0.stderr.take().unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_until_accepting(addr).await;
    let mut steady = connect(&format!("ws://{addr}/echo")).await;
    for i in 0..400 {
        // Each logs "connection opened" and "connection closed".
        let mut passing = RawClient::connect(addr, "/echo").await;
        passing.send_frame(true, 8, &1000u16.to_be_bytes()).await;
        assert_eq!(passing.read_close().await, Some(1000), "connection {i}");
        if i % 20 == 19 {
            let text = format!("still served after {i}");
            send_text(&mut steady, &text).await;
            assert_eq!(next_message(&mut steady).await.into_text().unwrap(), text);
        }
    }
    let dropped = metric(addr, "wshub_log_lines_dropped_total").await;
    assert!(dropped > 0.0, "lines were dropped and counted: {dropped}");

    // Reading again: what was queued comes out, then the warning.
    let lines = Arc::new(Mutex::new(String::new()));
    let kept = lines.clone();
    std::thread::spawn(move || {
        let mut stderr = stderr;
        let mut chunk = [0u8; 8192];
        while let Ok(n) = stderr.read(&mut chunk) {
            if n == 0 {
                break;
            }
            kept.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let warning = loop {
        let found = lines
            .lock()
            .unwrap()
            .lines()
            .find(|l| l.contains("log lines dropped in the last"))
            .map(str::to_owned);
        if let Some(line) = found {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "no drop warning; log:\n{}",
            lines.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let json: serde_json::Value = serde_json::from_str(&warning).unwrap();
    assert_eq!(json["level"], "WARN", "{warning}");
    let reported = json["fields"]["dropped"].as_u64().unwrap();
    assert!(
        reported > 0 && reported as f64 <= dropped,
        "{reported} of {dropped}: {warning}"
    );
    // Served all along, and still.
    send_text(&mut steady, "after").await;
    assert_eq!(next_message(&mut steady).await.into_text().unwrap(), "after");
}

#[test]
fn help_lists_every_option_with_its_default() {
    let output = wshub_command().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "--port",
        "[default: 8080]",
        "--bind",
        "--allowed-origin",
        "--tls-cert",
        "--tls-key",
        "--tls-self-signed",
        "--ping-interval",
        "[default: 54s]",
        "--read-timeout",
        "[default: 60s]",
        "--write-timeout",
        "[default: 10s]",
        "--shutdown-timeout",
        "[default: 5s]",
        "--max-message-size",
        "[default: 1MiB]",
        "--max-connections",
        "--max-queue-messages",
        "--max-queue-bytes",
        "--log-level",
        "--log-format",
        "--config",
        "[env: WSHUB_PORT=]",
        "--log-buffer-lines",
        "--app <ID:KEY:SECRET>",
        "[env: WSHUB_APPS]",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
    // Grouped by topic, with examples at the end.
    let mut at = 0;
    for heading in [
        "\nServer:\n",
        "\nTLS:\n",
        "\nAuth (JWT access tokens):\n",
        "\nLimits:\n",
        "\nHistory:\n",
        "\nScale-out (Redis):\n",
        "\nPusher (apps):\n",
        "\nLogging:\n",
        "\nExamples:\n",
    ] {
        let found = help[at..]
            .find(heading)
            .unwrap_or_else(|| panic!("--help lacks {heading:?} after byte {at}:\n{help}"));
        at += found + heading.len();
    }
    let tls = help.find("\nTLS:\n").unwrap();
    let limits = help.find("\nLimits:\n").unwrap();
    assert!(help[tls..limits].contains("--tls-cert"), "--tls-cert is under TLS");
    assert!(help[limits..].contains("--max-message-size"));
    assert!(
        help[at..].contains("wshub --redis redis://"),
        "examples:\n{}",
        &help[at..]
    );
    assert!(!help.to_lowercase().contains("seed"), "{help}");
}

/// Starts the binary on a free port and returns it with its address, read
/// from its JSON "listening" log line. The caller waits for or kills it.
#[allow(clippy::zombie_processes)]
fn spawn_server(extra: &[&str]) -> (Child, std::net::SocketAddr, BufReader<std::process::ChildStderr>) {
    let mut child = wshub_command()
        .args(["--bind", "127.0.0.1", "--port", "0", "--log-format", "json"])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "server exited before listening"
        );
        let json: serde_json::Value = match serde_json::from_str(&line) {
            Ok(json) => json,
            Err(_) => continue,
        };
        if json["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("listening on "))
        {
            let addr = json["fields"]["addr"].as_str().unwrap().parse().unwrap();
            return (child, addr, stderr);
        }
    }
}

#[tokio::test]
async fn sigterm_closes_clients_with_1001_and_exits_0() {
    let (mut child, addr, mut stderr) = spawn_server(&[]);
    let mut client = connect(&format!("ws://{addr}/echo")).await;
    send_text(&mut client, "before").await;
    assert_eq!(next_message(&mut client).await.into_text().unwrap(), "before");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(expect_close(&mut client).await, 1001);
    drop(client);
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code(), Some(0));
    // The last lines were written out before the exit.
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("shutdown complete"), "{rest}");
}

#[tokio::test]
async fn close_lines_are_logged_with_peer_endpoint_reason_and_duration() {
    let (mut child, addr, mut stderr) = spawn_server(&[]);
    let mut raw = RawClient::connect(addr, "/echo").await;
    raw.send_frame(true, 1, &[0xff]).await;
    assert_eq!(raw.read_close().await, Some(1007));
    raw.send_frame(true, 8, &1007u16.to_be_bytes()).await;
    let mut line = String::new();
    let closed = loop {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0);
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        if json["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("connection closed"))
        {
            break json;
        }
    };
    let fields = &closed["fields"];
    assert_eq!(fields["endpoint"], "echo");
    assert_eq!(fields["code"], 1007);
    assert!(fields["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(fields["duration_ms"].is_u64());
    assert!(fields["message"].as_str().unwrap().contains("UTF-8"), "{fields}");
    child.kill().unwrap();
    let _ = child.wait();
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// The binary with its open-files limit lowered to `limit` (by the shell's
/// `ulimit`, so the test process keeps its own).
fn wshub_with_open_files(limit: u32) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_wshub"));
    without_wshub_env(command)
}

#[tokio::test]
async fn at_its_open_files_limit_it_keeps_serving_logs_and_accepts_again_later() {
    let server = common::redis::WshubProcess::spawn_with(wshub_with_open_files(40), &["--history", "none"]);
    let url = server.url("/echo");

    // Open connections until one is not accepted within 2 s: the server is
    // out of file descriptors (its limit is 40, a few of them its own).
    let mut clients = Vec::new();
    let mut refused = false;
    for _ in 0..60 {
        match tokio::time::timeout(Duration::from_secs(2), tokio_tungstenite::connect_async(url.as_str())).await {
            Ok(Ok((client, _))) => clients.push(client),
            Ok(Err(e)) => panic!("connect failed instead of waiting: {e}"),
            Err(_) => {
                refused = true;
                break;
            }
        }
    }
    assert!(refused, "the limit was never reached ({} connections)", clients.len());
    assert!(
        (10..40).contains(&clients.len()),
        "{} connections before the limit",
        clients.len()
    );

    // The connections it has are served as before.
    let first = &mut clients[0];
    send_text(first, "still here").await;
    assert_eq!(next_message(first).await.into_text().unwrap(), "still here");
    assert!(
        server.log_lines().iter().any(|l| l.contains("accept failed")),
        "the accept error is logged"
    );

    // Once descriptors free up, it accepts again (after its back-off).
    for mut client in clients.drain(10..) {
        let _ = client.close(None).await;
    }
    let (mut again, _) = tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(url.as_str()))
        .await
        .expect("accepted again once descriptors were freed")
        .expect("connect");
    send_text(&mut again, "back").await;
    assert_eq!(next_message(&mut again).await.into_text().unwrap(), "back");
}
