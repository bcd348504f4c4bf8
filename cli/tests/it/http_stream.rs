//! The http source's streaming mode against a server the test runs on
//! loopback: a chunked answer of newline-delimited records whose chunks cut
//! records in two, sent with pauses; then, when the source opens the stream
//! again, server-sent events on an answer that ends when the connection
//! closes. A SmartModule drops records before they leave.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::harness::{Env, module};

/// Serves the first connection a chunked ndjson stream, the later ones an
/// event stream; counts connections.
fn serve_streams() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let served = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let pause = || std::thread::sleep(Duration::from_millis(300));
            if served.fetch_add(1, Ordering::SeqCst) == 0 {
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n\
                      Transfer-Encoding: chunked\r\n\r\n",
                );
                for chunk in ["r1\nr", "2\n12345\n", "r3\n\nr4", "\nr5"] {
                    pause();
                    let _ =
                        stream.write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes());
                }
                pause();
                let _ = stream.write_all(b"0\r\n\r\n");
            } else {
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n\
                      : keep-alive\r\n\r\nevent: fact\r\ndata: e1\r\n\r\n",
                );
                pause();
                let _ = stream.write_all(b"data: 678\n\ndata: e2\ndata: two lines\n\n");
                pause();
            }
        }
    });
    (port, count)
}

#[test]
fn a_streaming_http_source_cuts_records_from_chunks_and_events() {
    let env = Env::started();
    let digits = module("digits-filter");
    env.ok(&[
        "smart-module",
        "create",
        "no-digits",
        "--wasm-file",
        &digits,
    ]);
    let (port, connections) = serve_streams();
    let file = env.home.path().join("stream.yml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: 0.1.0\nmeta:\n  name: ticker\n  type: http-source\n  topic: ticks\n  \
             create-topic: true\nhttp:\n  endpoint: http://127.0.0.1:{port}/stream\n  \
             interval: 200ms\n  stream: true\ntransforms:\n  - uses: no-digits\n"
        ),
    )
    .unwrap();
    let out = env
        .command(&[
            "connector",
            "run",
            "--config",
            &file.display().to_string(),
            "--max-records",
            "7",
        ])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("stream open (delimited records)"), "{log}");
    assert!(log.contains("stream open (server-sent events)"), "{log}");
    assert!(connections.load(Ordering::SeqCst) >= 2);
    // The all-digit records (12345, 678) were dropped by the module; the
    // empty piece between r3 and r4 is no record.
    assert_eq!(
        env.ok(&["consume", "ticks", "-B", "-d", "-O", "json"])
            .lines()
            .map(
                |l| serde_json::from_str::<serde_json::Value>(l).unwrap()["value"]
                    .as_str()
                    .unwrap()
                    .to_string()
            )
            .collect::<Vec<_>>(),
        ["r1", "r2", "r3", "r4", "r5", "e1", "e2\ntwo lines"]
    );
    assert!(log.contains("2 dropped by SmartModules"), "{log}");

    // Parameters of the mode are checked when the file is read.
    std::fs::write(
        &file,
        format!(
            "apiVersion: 0.1.0\nmeta: {{name: t, type: http-source, topic: ticks}}\nhttp:\n  \
             endpoint: http://127.0.0.1:{port}/\n  delimiter: \",\"\n"
        ),
    )
    .unwrap();
    let e = env.fails(
        &["connector", "run", "--config", &file.display().to_string()],
        b"",
    );
    assert!(
        e.contains("http.delimiter is for a streaming source"),
        "{e}"
    );
}
