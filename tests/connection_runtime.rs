//! The binary runs upgraded connections on a runtime (and thread) of their
//! own, apart from the one that accepts and speaks HTTP, so that handshake
//! garbage and long-lived connection state do not share allocator pages.
//! Everything must work across that hop: echo, rooms, limits, shutdown.

mod common;

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

/// A current-thread runtime on a thread of its own, until dropped.
struct ConnectionThread {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ConnectionThread {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async {
                let _ = stopped.await;
            })
        });
        ConnectionThread {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for ConnectionThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            thread.join().expect("connection thread");
        }
    }
}

#[tokio::test]
async fn echo_and_rooms_work_when_connections_run_on_their_own_thread() {
    let thread = ConnectionThread::start();
    let server = start_server_on(test_config(), thread.handle.clone()).await;

    let mut echo = connect(&server.url("/echo")).await;
    echo.send(Message::text("hello")).await.unwrap();
    assert_eq!(next_message(&mut echo).await, Message::text("hello"));
    echo.send(Message::binary(vec![0u8, 1, 2, 255])).await.unwrap();
    assert_eq!(next_message(&mut echo).await, Message::binary(vec![0u8, 1, 2, 255]));

    let mut alice = connect(&server.url("/ws/attic")).await;
    let mut bob = connect(&server.url("/ws/attic")).await;
    wait_for_connections(&server.hub, 3).await;
    alice.send(Message::text("hi bob")).await.unwrap();
    assert_eq!(next_message(&mut bob).await, Message::text("hi bob"));
    assert_eq!(
        next_message(&mut alice).await,
        Message::text("hi bob"),
        "the sender too"
    );

    let waiting = tokio::spawn(async move {
        let codes = (
            expect_close(&mut echo).await,
            expect_close(&mut alice).await,
            expect_close(&mut bob).await,
        );
        for client in [&mut echo, &mut alice, &mut bob] {
            let _ = futures_util::StreamExt::next(client).await;
        }
        codes
    });
    let hub = server.hub.clone();
    server.shutdown().await;
    assert_eq!(waiting.await.unwrap(), (1001, 1001, 1001));
    assert_eq!(hub.connection_count(), 0, "every connection gone before run returned");
}

#[tokio::test]
async fn a_protocol_error_closes_only_that_connection_on_the_other_thread() {
    let thread = ConnectionThread::start();
    let server = start_server_on(test_config(), thread.handle.clone()).await;
    let mut good = connect(&server.url("/echo")).await;
    let mut bad = RawClient::connect(server.addr, "/echo").await;
    wait_for_connections(&server.hub, 2).await;
    // A reserved opcode (0x3): 1002, and only for this client.
    bad.send_raw(&[0x83, 0x80, 0, 0, 0, 0]).await;
    assert_eq!(bad.read_close().await, Some(1002));
    good.send(Message::text("still here")).await.unwrap();
    assert_eq!(next_message(&mut good).await, Message::text("still here"));
    server.shutdown().await;
}

#[tokio::test]
async fn the_connections_live_on_the_connection_runtime() {
    let thread = ConnectionThread::start();
    let server = start_server_on(test_config(), thread.handle.clone()).await;
    let mut client = RawClient::connect(server.addr, "/echo").await;
    wait_for_connections(&server.hub, 1).await;
    // Stopping that runtime drops its tasks: the connection goes with them,
    // while the server itself (on this runtime) keeps running.
    drop(thread);
    assert_eq!(server.hub.connection_count(), 0);
    assert_eq!(
        client.read_close().await,
        None,
        "the socket closed without a close frame"
    );
    server.shutdown().await;
}
