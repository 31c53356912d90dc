//! The binary's edge: bad flags and files stop start-up with a message
//! that names them; `--help` lists every option with its default; SIGTERM
//! shuts down gracefully with exit status 0; at its open-files limit it
//! keeps serving, logs, and accepts again once descriptors free up.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
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
        if json["fields"]["message"] == "listening" {
            let addr = json["fields"]["addr"].as_str().unwrap().parse().unwrap();
            return (child, addr, stderr);
        }
    }
}

#[tokio::test]
async fn sigterm_closes_clients_with_1001_and_exits_0() {
    let (mut child, addr, _stderr) = spawn_server(&[]);
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
