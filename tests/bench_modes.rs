//! The load generator (`wshub-bench`) measures what it claims: each of its modes, run briefly
//! against an in-process wshub, connects everything it asked for and reports clean results
//! (every echo byte intact, no loss or reordering in a room, stalled readers evicted while the
//! healthy ones lose nothing).
//!
//! Only counts are asserted, never times or rates: the machines that run this are shared and
//! noisy.

mod common;

use std::time::Duration;

use common::{start_server_with, test_config};
use wshub_bench::{broadcast, conns, echo, slow};
use wshub_bench::{BroadcastOptions, Common, ConnsOptions, EchoOptions, Format, SlowOptions};

#[tokio::test]
async fn echo_mode_checks_every_byte() {
    let server = start_server_with(test_config()).await;
    for (format, pipeline) in [(Format::Binary, 1), (Format::Text, 4)] {
        let report = echo::run(EchoOptions {
            common: Common::new(server.url("/echo")),
            connections: 10,
            duration: Duration::from_millis(500),
            pipeline,
            size: 64,
            format,
        })
        .await
        .expect("echo run");
        assert_eq!(report.connections.opened, 10, "{report:?}");
        assert!(report.messages > 0, "{report:?}");
        assert_eq!(report.mismatches, 0, "{report:?}");
        assert_eq!(report.unexpected, 0, "{report:?}");
        assert_eq!(report.disconnects, 0, "{report:?}");
        assert!(report.latency.count >= report.messages, "{report:?}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn broadcast_mode_sees_no_loss_or_reordering() {
    let server = start_server_with(test_config()).await;
    for rate in [None, Some(2000.0)] {
        let report = broadcast::run(BroadcastOptions {
            common: Common::new(server.url("/ws")),
            clients: 30,
            senders: 5,
            rate,
            duration: Duration::from_millis(500),
            drain: Duration::from_secs(5),
            ..BroadcastOptions::default()
        })
        .await
        .expect("broadcast run");
        let room = &report.room;
        assert_eq!(report.connections.opened, 30, "{report:?}");
        assert!(room.sent > 0, "{report:?}");
        assert_eq!(room.expected_deliveries, room.sent * 30, "{report:?}");
        assert_eq!(room.deliveries, room.expected_deliveries, "{report:?}");
        assert_eq!(room.loss, 0, "{report:?}");
        assert_eq!(room.order_violations, 0, "{report:?}");
        assert_eq!(room.corrupt, 0, "{report:?}");
        assert!(room.drained, "{report:?}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn several_generator_threads_add_up_to_one_clean_report() {
    let server = start_server_with(test_config()).await;
    let mut common = Common::new(server.url("/echo"));
    common.threads = 3;
    let report = echo::run(EchoOptions {
        common,
        connections: 10,
        duration: Duration::from_millis(500),
        ..EchoOptions::default()
    })
    .await
    .expect("echo run on three threads");
    assert_eq!(report.connections.opened, 10, "{report:?}");
    assert!(report.messages > 0, "{report:?}");
    assert_eq!(
        (report.mismatches, report.unexpected, report.disconnects),
        (0, 0, 0),
        "{report:?}"
    );
    assert!(report.latency.count >= report.messages, "{report:?}");

    // One sender in a closed loop (the latency-bound fan-out), its room spread over threads.
    let mut common = Common::new(server.url("/ws"));
    common.threads = 3;
    let report = broadcast::run(BroadcastOptions {
        common,
        clients: 30,
        senders: 1,
        duration: Duration::from_millis(500),
        drain: Duration::from_secs(5),
        ..BroadcastOptions::default()
    })
    .await
    .expect("one-sender broadcast run on three threads");
    let room = &report.room;
    assert_eq!(report.connections.opened, 30, "{report:?}");
    assert_eq!((room.senders, room.pacing), (1, "closed-loop"), "{report:?}");
    assert!(room.sent > 1, "the loop went round: {report:?}");
    assert_eq!(room.deliveries, room.sent * 30, "{report:?}");
    assert_eq!(room.latency.count, room.deliveries, "{report:?}");
    assert_eq!(
        (room.loss, room.order_violations, room.corrupt),
        (0, 0, 0),
        "{report:?}"
    );
    assert!(room.drained, "{report:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn conns_mode_opens_every_connection_and_reads_the_servers_memory() {
    let server = start_server_with(test_config()).await;
    let mut common = Common::new(server.url("/echo"));
    // The server runs in this process, so this process's RSS is the server's.
    common.server_pid = Some(std::process::id());
    let report = conns::run(ConnsOptions {
        common,
        connections: 50,
        hold: Duration::from_millis(300),
        ..ConnsOptions::default()
    })
    .await
    .expect("conns run");
    assert_eq!(report.connections.opened, 50, "{report:?}");
    assert_eq!(report.connections.failed, 0, "{report:?}");
    assert_eq!(report.dropped, 0, "{report:?}");
    assert!(report.server_rss_per_conn_bytes.is_some(), "{report:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn slow_mode_sees_stalled_readers_evicted_and_healthy_ones_unharmed() {
    let mut config = test_config();
    // Room for a healthy reader on a loaded machine (it shares this thread with the server
    // and the senders, and a rate-paced sender catches up after a stall in a burst): half a
    // second of messages.
    config.max_queue_messages = 512;
    config.max_queue_bytes = 8 << 20;
    let server = start_server_with(config).await;
    // A stalled reader is evicted only once the kernel's buffers for it are full too (the
    // server's send buffer grows to 4 MiB here) and then its queue (8 MiB), so the senders
    // send 32 MiB in 16 KiB messages.
    let report = slow::run(SlowOptions {
        common: Common::new(server.url("/ws")),
        clients: 8,
        stalled: 2,
        senders: 1,
        rate: Some(1000.0),
        duration: Duration::from_secs(2),
        drain: Duration::from_secs(5),
        size: 16 * 1024,
        ..SlowOptions::default()
    })
    .await
    .expect("slow run");
    assert_eq!(report.connections.opened, 8, "{report:?}");
    assert_eq!(report.stalled, 2, "{report:?}");
    assert_eq!(report.evicted, 2, "{report:?}");
    let healthy = &report.healthy;
    assert_eq!(healthy.clients, 6, "{report:?}");
    assert!(healthy.sent > 0, "{report:?}");
    assert_eq!(healthy.loss, 0, "{report:?}");
    assert_eq!(healthy.order_violations, 0, "{report:?}");
    assert_eq!(healthy.corrupt, 0, "{report:?}");
    assert_eq!(healthy.disconnects, 0, "{report:?}");
    server.shutdown().await;
}

/// wshub with the Pusher peers' app: client events on and, as on the peers, not rate-limited.
async fn pusher_server() -> common::TestServer {
    let mut config = test_config();
    let mut app = wshub::apps::App::from_spec("app-id:app-key:app-secret").expect("valid spec");
    app.max_client_events_per_second = 0;
    config.apps = wshub::apps::Apps::new(vec![app]).expect("valid app");
    start_server_with(config).await
}

#[tokio::test]
async fn pusher_fanout_modes_deliver_every_event_to_every_subscriber() {
    use wshub_bench::pusher::fanout::{self, FanoutOptions, Publisher};
    let server = pusher_server().await;
    for publisher in [Publisher::Api, Publisher::Client] {
        let report = fanout::run(FanoutOptions {
            common: Common::new(server.url("")),
            publisher,
            subscribers: 20,
            window: 2,
            duration: Duration::from_millis(500),
            ..FanoutOptions::default()
        })
        .await
        .expect("fan-out run");
        assert_eq!(report.subscribers, 20, "{report:?}");
        assert!(report.published > 0, "{report:?}");
        assert_eq!(report.deliveries, report.published * 20, "{report:?}");
        assert_eq!(report.loss, 0, "{report:?}");
        assert_eq!(report.mismatched, 0, "{report:?}");
        assert_eq!(report.stalls, 0, "{report:?}");
        assert_eq!(report.publish_errors, 0, "{report:?}");
        assert_eq!(report.latency.count, report.deliveries, "{report:?}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn pusher_api_and_idle_modes_report_clean_counts() {
    use wshub_bench::pusher::{api, idle};
    let server = pusher_server().await;
    let report = api::run(api::ApiOptions {
        common: Common::new(server.url("")),
        http_connections: 2,
        subscribers: 3,
        duration: Duration::from_millis(300),
        ..api::ApiOptions::default()
    })
    .await
    .expect("HTTP API run");
    assert!(report.published > 0, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!(report.loss, 0, "{report:?}");
    assert_eq!(report.deliveries, report.published * 3, "{report:?}");

    let mut common = Common::new(server.url(""));
    common.server_pid = Some(std::process::id());
    let report = idle::run(idle::IdleOptions {
        common,
        connections: 50,
        channels: 5,
        hold: Duration::from_millis(200),
        ..idle::IdleOptions::default()
    })
    .await
    .expect("idle run");
    assert_eq!(report.subscribed, 50, "{report:?}");
    assert_eq!(report.dropped, 0, "{report:?}");
    assert!(report.server_rss_after_kib.is_some(), "{report:?}");
    server.shutdown().await;
}
