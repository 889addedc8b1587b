//! Hostile and slow clients: bodies over the limits (with and without a length), bodies
//! trickled slower than the request timeout, header trickling (slowloris), and 1,000
//! concurrent connections. The server answers 413/408 with JSON errors, keeps serving
//! everyone else, and its memory stays bounded by the limits, not by what clients send.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::common::data_folder;
use crate::support::*;

/// Reads an HTTP/1.1 response head and what follows of the body (until close or `limit`).
async fn read_response(stream: &mut TcpStream, limit: Duration) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&out);
                if let Some(head_end) = text.find("\r\n\r\n")
                    && let Some(len) = text[..head_end].lines().find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    && out.len() >= head_end + 4 + len
                {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"))
}

/// Sends a chunked body of `total` bytes of JSON-looking filler in 64 KiB chunks, stopping
/// early when the server answers or closes; returns the response.
async fn chunked_upload(addr: std::net::SocketAddr, key: &str, path: &str, total: usize) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 64 * 1024];
    let mut sent = 0;
    while sent < total {
        let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        if s.write_all(&frame).await.is_err() {
            break; // the server answered and closed
        }
        sent += chunk.len();
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    read_response(&mut s, Duration::from_secs(30)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_bodies_get_413_and_memory_stays_bounded() {
    let root = tempfile::tempdir().unwrap();
    let dir = data_folder(root.path());
    let app = spawn_with(&dir, &[]).await;
    let key = admin_key(&dir);
    let pid = app.child.id();

    // A declared length over the limit is refused before the body is read.
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(
        format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n{{"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let r = read_response(&mut s, Duration::from_secs(10)).await;
    assert_eq!(status_of(&r), 413, "{r}");
    assert!(r.contains(r#""code":"too_large""#), "{r}");

    // Chunked, no length: refused once the limit is passed, whatever follows.
    let r = chunked_upload(app.addr, &key, "/v1/events", 8 << 20).await;
    assert_eq!(status_of(&r), 413, "{r}");
    assert!(r.contains(r#""code":"too_large""#), "{r}");

    let (_, peak_before) = rss_mib(pid);
    // Eight concurrent 64 MiB uploads to the batch endpoint (limit 16 MiB): memory is bounded
    // by the limit times the concurrency, not by the 512 MiB sent.
    let uploads: Vec<_> = (0..8)
        .map(|_| {
            let key = key.clone();
            let addr = app.addr;
            tokio::spawn(
                async move { chunked_upload(addr, &key, "/v1/events/batch", 64 << 20).await },
            )
        })
        .collect();
    for u in uploads {
        let r = u.await.unwrap();
        assert_eq!(status_of(&r), 413, "{r}");
    }
    let (_, peak_after) = rss_mib(pid);
    eprintln!(
        "server peak RSS {peak_before:.0} MiB -> {peak_after:.0} MiB after 8 x 64 MiB chunked uploads"
    );
    assert!(
        peak_after - peak_before < 8.0 * 16.0 * 1.5 + 32.0,
        "peak RSS grew by {:.0} MiB",
        peak_after - peak_before
    );
    // Still serving.
    app.client.readyz().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickled_past_the_timeout_gets_408_and_others_are_served() {
    let root = tempfile::tempdir().unwrap();
    let dir = data_folder(root.path());
    let app = spawn_with(&dir, &[("BITACORA_SERVER__REQUEST_TIMEOUT_SECS", "3")]).await;
    let key = admin_key(&dir);
    let body = r#"{"action":"slow.body","description":"llega muy despacio"}"#;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(
        format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    // One byte every 500 ms: each frame arrives in time, the whole body does not.
    let trickle = async {
        for b in body.as_bytes() {
            if s.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            if started.elapsed() > Duration::from_secs(8) {
                break;
            }
        }
    };
    let other = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t = Instant::now();
        app.client
            .send(&crate::common::event(
                serde_json::json!({"action": "fast.client"}),
            ))
            .await
            .unwrap();
        t.elapsed()
    };
    let ((), fast) = tokio::join!(trickle, other);
    assert!(
        fast < Duration::from_secs(2),
        "a normal client waited {fast:?}"
    );
    let r = read_response(&mut s, Duration::from_secs(10)).await;
    assert_eq!(status_of(&r), 408, "{r}");
    assert!(r.contains(r#""code":"timeout""#), "{r}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "answered after {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_and_do_not_starve_other_clients() {
    let root = tempfile::tempdir().unwrap();
    let dir = data_folder(root.path());
    // A short header-read timeout so that the drill sees it act.
    let app = spawn_with(&dir, &[("BITACORA_SERVER__HEADER_READ_TIMEOUT_SECS", "2")]).await;
    let pid = app.child.id();
    let (rss_before, _) = rss_mib(pid);
    // 300 connections that send a request line and then one header byte every 200 ms: they
    // never finish a request head.
    // Each connection's age is measured from its own opening: opening 300 takes a while on a
    // loaded machine, and the server's timer starts at each accept, not after the last one.
    let mut slow = Vec::new();
    let mut opened_at = Vec::new();
    for _ in 0..300 {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        opened_at.push(Instant::now());
        s.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(s);
    }
    let stop = Instant::now() + Duration::from_secs(4);
    let trickle = async {
        let mut closed_after = vec![None; slow.len()];
        while Instant::now() < stop {
            for ((s, closed), opened) in slow
                .iter_mut()
                .zip(closed_after.iter_mut())
                .zip(opened_at.iter())
            {
                if closed.is_some() {
                    continue;
                }
                // Anything to read (an answer, the end, a reset) means the server gave up on it.
                let mut byte = [0u8; 1];
                let gone = s.write_all(b"a").await.is_err()
                    || tokio::time::timeout(Duration::from_millis(1), s.read(&mut byte))
                        .await
                        .is_ok();
                if gone {
                    *closed = Some(opened.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        closed_after
    };
    let normal = async {
        let mut worst = Duration::ZERO;
        for i in 0..20 {
            let t = Instant::now();
            app.client
                .send(&crate::common::event(
                    serde_json::json!({"id": format!("n-{i}"), "action": "normal.client"}),
                ))
                .await
                .unwrap();
            worst = worst.max(t.elapsed());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        worst
    };
    let (closed_after, worst) = tokio::join!(trickle, normal);
    let (rss_after, _) = rss_mib(pid);
    let closed: Vec<Duration> = closed_after.iter().flatten().copied().collect();
    let last_close = closed.iter().max().copied().unwrap_or_default();
    eprintln!(
        "slowloris x300: {} of {} closed by the server, the last after {last_close:?}; \
         worst normal request {worst:?}; RSS {rss_before:.0} -> {rss_after:.0} MiB",
        closed.len(),
        slow.len()
    );
    assert_eq!(
        closed.len(),
        slow.len(),
        "every connection that never finished its request head is closed"
    );
    assert!(
        closed.iter().all(|t| *t >= Duration::from_millis(1500)),
        "closed before the header-read timeout: {closed:?}"
    );
    assert!(
        worst < Duration::from_secs(2),
        "a normal client waited {worst:?}"
    );
    assert!(
        rss_after - rss_before < 64.0,
        "RSS grew {:.0} MiB",
        rss_after - rss_before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_connections_are_all_served() {
    const CONNECTIONS: usize = 1000;
    let root = tempfile::tempdir().unwrap();
    let dir = data_folder(root.path());
    let app = spawn_with(&dir, &[]).await;
    let key = admin_key(&dir);
    // Every connection open at once, each with one request in flight, then a second request
    // on the same (kept-alive) connection.
    let mut streams = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        streams.push(
            TcpStream::connect(app.addr)
                .await
                .expect("connect (raise `ulimit -n`?)"),
        );
    }
    let tasks: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            let key = key.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for round in 0..2 {
                    let body = format!(r#"{{"id":"c-{i}-{round}","action":"conn.test"}}"#);
                    let req = format!(
                        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
                         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    s.write_all(req.as_bytes()).await.unwrap();
                    let r = read_response(&mut s, Duration::from_secs(60)).await;
                    statuses.push(status_of(&r));
                }
                statuses
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        for status in t.await.unwrap() {
            assert_eq!(status, 201);
            created += 1;
        }
    }
    assert_eq!(created, 2 * CONNECTIONS);
    let page = app
        .client
        .search(&bitacora_client::SearchParams::new().page(1).per_page(1))
        .await
        .unwrap();
    assert_eq!(page.total, Some(2 * CONNECTIONS as u64));
}
