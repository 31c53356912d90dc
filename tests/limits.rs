//! `--max-connections`: beyond it, HTTP 503 before the upgrade; a slot
//! frees when a connection leaves.

mod common;

use common::*;

#[tokio::test]
async fn connections_beyond_the_limit_get_503() {
    let mut config = test_config();
    config.max_connections = 2;
    let server = start_server_with(config).await;
    let mut first = connect(&server.url("/echo")).await;
    let _second = connect(&server.url("/ws")).await;
    assert_eq!(
        connect_with_origin(&server.url("/echo"), "http://localhost")
            .await
            .err(),
        Some(503)
    );
    first.close(None).await.unwrap();
    wait_for_connections(&server.hub, 1).await;
    assert!(connect_with_origin(&server.url("/echo"), "http://localhost")
        .await
        .is_ok());
    server.shutdown().await;
}
