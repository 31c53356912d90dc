//! 10,000 connects and disconnects, half closing politely and half just
//! dropping the socket: afterwards no connection is counted, no room is
//! left, and the server process's memory is back near where it was after a
//! warm-up (a leak of even 200 bytes per connection would show).

mod common;

use std::process::Stdio;

use common::*;

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// The process's resident memory once it has given back what it freed:
/// the binary returns freed pages once a second (`mi_collect` in main.rs),
/// so a reading right after a burst may or may not include megabytes that
/// are about to go. The lowest of readings over a second and a half always
/// comes after one such release.
async fn settled_rss_bytes(pid: u32) -> u64 {
    let mut lowest = rss_bytes(pid);
    for _ in 0..6 {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        lowest = lowest.min(rss_bytes(pid));
    }
    lowest
}

async fn healthz_total(addr: std::net::SocketAddr) -> (u64, u64) {
    let json = common::http_get(addr, "/healthz").await.json();
    (
        json["connections"]["total"].as_u64().unwrap(),
        json["rooms"].as_u64().unwrap(),
    )
}

async fn churn(addr: std::net::SocketAddr, total: usize, parallel: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..parallel {
        tasks.spawn(async move {
            for i in (worker..total).step_by(parallel) {
                let path = if i % 2 == 0 { "/ws" } else { "/echo" };
                let mut client = RawClient::connect(addr, path).await;
                if i % 4 < 2 {
                    client.send_frame(true, 8, &1000u16.to_be_bytes()).await;
                    assert_eq!(client.read_close().await, Some(1000));
                }
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
}

async fn wait_until_empty(addr: std::net::SocketAddr) {
    tokio::time::timeout(PATIENCE, async {
        while healthz_total(addr).await != (0, 0) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("every connection and room released");
}

#[tokio::test]
async fn ten_thousand_connections_leave_nothing_behind() {
    let mut child = wshub_command()
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--log-level",
            "warn",
            "--log-format",
            "json",
        ])
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // The port is not logged at warn level: find it in /proc.
    let addr = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(addr) = listening_addr(child.id()) {
                return addr;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("server listening");

    churn(addr, 1_000, 50).await;
    wait_until_empty(addr).await;
    let warm = settled_rss_bytes(child.id()).await;
    churn(addr, 10_000, 50).await;
    wait_until_empty(addr).await;
    let after = settled_rss_bytes(child.id()).await;
    child.kill().unwrap();
    let _ = child.wait();
    let growth = after.saturating_sub(warm);
    eprintln!("RSS after warm-up {warm} B, after 10,000 more connections {after} B (+{growth} B)");
    assert!(
        growth < 2 * 1024 * 1024,
        "RSS grew by {growth} bytes over 10,000 connections"
    );
}

/// The loopback port a process listens on, from /proc/net/tcp and its fds.
fn listening_addr(pid: u32) -> Option<std::net::SocketAddr> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(str::to_owned)
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    for line in table.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // State 0A is LISTEN.
        if cols.get(3) == Some(&"0A") && inodes.iter().any(|i| Some(&i.as_str()) == cols.get(9)) {
            let port = u16::from_str_radix(cols[1].split(':').nth(1)?, 16).ok()?;
            return Some(([127, 0, 0, 1], port).into());
        }
    }
    None
}
