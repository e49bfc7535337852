//! Listeners: connections that never finish a request, too many connections, and a server
//! that keeps answering its health check through it all.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::TestServer;

/// Reads until the server closes the connection, or gives up after `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

async fn health(server: &TestServer) -> u16 {
    let url = format!("http://{}/health", server.running().http_addr);
    match tokio::time::timeout(Duration::from_secs(5), server.http.get(url).send()).await {
        Ok(Ok(response)) => response.status().as_u16(),
        _ => 0,
    }
}

#[tokio::test]
async fn silent_partial_and_idle_connections_are_closed_by_the_header_timeout() {
    let server =
        TestServer::start_with(|c| c.listener.header_timeout = Duration::from_secs(1)).await;
    let addr = server.running().http_addr;

    // Connects and says nothing.
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    // Sends half a request line, then stalls.
    let mut partial = TcpStream::connect(addr).await.expect("connect");
    partial.write_all(b"GET /heal").await.expect("write");
    // A half-done WebSocket upgrade: headers never finished.
    let mut upgrade = TcpStream::connect(server.running().ws_addr)
        .await
        .expect("connect");
    upgrade
        .write_all(b"GET /app/key-1?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        .await
        .expect("write");
    // A kept-alive connection that finished one request and then goes quiet.
    let mut kept = TcpStream::connect(addr).await.expect("connect");
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");

    for (name, stream) in [
        ("silent", &mut silent),
        ("partial", &mut partial),
        ("upgrade", &mut upgrade),
        ("kept-alive", &mut kept),
    ] {
        assert!(
            closed_within(stream, Duration::from_secs(4)).await,
            "the {name} connection was left open"
        );
    }
    assert_eq!(health(&server).await, 200);
}

#[tokio::test]
async fn per_address_and_global_caps_refuse_extra_connections_and_health_keeps_working() {
    let server = TestServer::start_with(|c| {
        c.listener.max_connections_per_ip = 5;
        c.listener.max_connections = 8;
    })
    .await;
    let addr = server.running().ws_addr;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(TcpStream::connect(addr).await.expect("connect"));
    }
    // Give the accept loop a moment to count them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut sixth = TcpStream::connect(addr).await.expect("the kernel accepts");
    assert!(
        closed_within(&mut sixth, Duration::from_secs(2)).await,
        "a sixth connection from one address must be closed at once"
    );
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // With a slot free, a real request goes through again.
    assert_eq!(health(&server).await, 200);
    assert!(server.running().admission.open() <= 5);
}

#[tokio::test]
async fn a_websocket_keeps_its_connection_slot_until_it_closes() {
    let server = TestServer::start_with(|c| c.listener.max_connections_per_ip = 2).await;
    let first = server.connect().await;
    let second = server.connect().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        server.running().admission.open(),
        2,
        "upgraded sockets still count"
    );
    let mut third = TcpStream::connect(server.running().ws_addr)
        .await
        .expect("connect");
    assert!(closed_within(&mut third, Duration::from_secs(2)).await);
    drop(first);
    drop(second);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while server.running().admission.open() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "slots were not given back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.connect().await;
}
