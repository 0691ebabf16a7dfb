//! Two lives of one tuple: a connect() that recycles a TIME_WAIT socket's tuple
//! (`net.ipv4.tcp_tw_reuse`, on for loopback) must not mix the two sockets.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use super::harness::{Watcher, WATCHERS};
use super::{assert_sequence, is, ACTIVE_CLOSER};
use crate::support;

/// connect() from `local` (a port once bound, or 0) to `server` with SO_REUSEADDR.
/// The kernel refuses to recycle a TIME_WAIT tuple (EADDRNOTAVAIL) until its last
/// timestamp is a second old: retry until it accepts, within a deadline.
fn connect_from(local: SocketAddr, server: SocketAddr) -> Socket {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.set_reuse_address(true).unwrap();
        let tried = s
            .bind(&local.into())
            .and_then(|()| s.connect(&server.into()));
        match tried {
            Ok(()) => return s,
            Err(e) if Instant::now() < deadline => {
                assert!(
                    matches!(
                        e.raw_os_error(),
                        Some(libc::EADDRNOTAVAIL | libc::EADDRINUSE)
                    ),
                    "connect from {local}: {e}"
                );
                std::thread::park_timeout(Duration::from_millis(50));
            }
            Err(e) => panic!("connect from {local} never recycled the tuple: {e}"),
        }
    }
}

#[test]
fn a_recycled_tuple_keeps_its_two_lives_apart() {
    if !support::privileged("a_recycled_tuple_keeps_its_two_lives_apart") {
        return;
    }
    let _shared = WATCHERS.read().unwrap_or_else(|e| e.into_inner());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let mut w = Watcher::start(&[], &["--port", &server.port().to_string()]);
    // The server reads to EOF and closes: the client closes first, twice.
    let acceptor = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut s, _) = listener.accept().unwrap();
            let _ = std::io::copy(&mut s, &mut std::io::sink());
        }
    });
    let first = connect_from("127.0.0.1:0".parse().unwrap(), server);
    let client = first.local_addr().unwrap().as_socket().unwrap();
    drop(first);
    w.wait_for(Duration::from_secs(10), "first TIME_WAIT", |v| {
        is(v, client, "TIME_WAIT")
    });
    drop(connect_from(client, server));
    acceptor.join().unwrap();
    let lives = |v: &serde_json::Value| is(v, client, "TIME_WAIT") && v["from"] == "FIN_WAIT2";
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.transitions().filter(|v| lives(v)).count() < 2 && Instant::now() < deadline {
        w.drain();
        std::thread::park_timeout(Duration::from_millis(20));
    }
    let w = w.stop();
    let mut expected = ACTIVE_CLOSER.to_vec();
    expected.push("TIME_WAIT>CLOSED");
    expected.extend(ACTIVE_CLOSER);
    assert_sequence(&w, client, server, &expected);
    let recycled = w
        .transitions()
        .find(|v| is(v, client, "CLOSED") && v["from"] == "TIME_WAIT")
        .unwrap();
    assert!(recycled["linux"].as_str().unwrap().contains("recycled"));
    // Each life has its own cookie: the second SYN_SENT does not carry the first's.
    let cookies: Vec<&serde_json::Value> = w
        .transitions()
        .filter(|v| is(v, client, "TIME_WAIT"))
        .map(|v| &v["cookie"])
        .collect();
    assert_eq!(cookies.len(), 2);
    assert_ne!(cookies[0], cookies[1], "{cookies:?}");
    let second_syn = w
        .transitions()
        .filter(|v| is(v, client, "SYN_SENT"))
        .nth(1)
        .unwrap();
    assert_ne!(&second_syn["cookie"], cookies[0], "{second_syn}");
}
