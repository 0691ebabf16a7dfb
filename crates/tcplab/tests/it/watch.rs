//! `tcplab watch` against real connections (privileged: tracefs, netns, raw sockets).
//!
//! Each test runs its own watcher filtered on its own port-0 listener's port, so tests
//! run in parallel without seeing each other. The watcher says `armed` on stderr once
//! tracing is on; tests wait for that line and for the events themselves, never sleep.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{self, Server};

#[path = "watch_harness.rs"]
mod harness;
#[path = "watch_netns.rs"]
mod netns;
#[path = "watch_recycle.rs"]
mod recycle;

use harness::{tcp_ext, Watcher, INSTANCES, WATCHERS};

fn connect(args: &[&str]) -> std::process::Output {
    support::tcplab("connect", args)
}

fn is(v: &Value, local: SocketAddr, to: &str) -> bool {
    v["kind"] == "transition" && v["local"] == local.to_string() && v["to"] == to
}

/// The client's address for a connection to `server`, from the watcher's SYN_SENT.
#[track_caller]
fn client_of(w: &mut Watcher, server: SocketAddr) -> SocketAddr {
    let v = w.wait_for(
        Duration::from_secs(10),
        "client SYN_SENT -> ESTABLISHED",
        |v| {
            v["remote"] == server.to_string() && v["from"] == "SYN_SENT" && v["to"] == "ESTABLISHED"
        },
    );
    v["local"].as_str().unwrap().parse().unwrap()
}

#[track_caller]
fn assert_sequence(w: &Watcher, local: SocketAddr, remote: SocketAddr, expected: &[&str]) {
    assert_eq!(
        w.sequence(local, remote),
        expected,
        "transitions of {local} -> {remote}; all lines:\n{}",
        w.seen
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

const ACTIVE_CLOSER: [&str; 5] = [
    "CLOSED>SYN_SENT",
    "SYN_SENT>ESTABLISHED",
    "ESTABLISHED>FIN_WAIT1",
    "FIN_WAIT1>FIN_WAIT2",
    "FIN_WAIT2>TIME_WAIT",
];
const PASSIVE_CLOSER_SERVER: [&str; 5] = [
    "LISTEN>SYN_RECV",
    "SYN_RECV>ESTABLISHED",
    "ESTABLISHED>CLOSE_WAIT",
    "CLOSE_WAIT>LAST_ACK",
    "LAST_ACK>CLOSED",
];

/// Runs one scripted client against a fresh server under a watcher; returns the stopped
/// watcher, the server and the client addresses, after `done` saw the last transition.
fn scenario(connect_args: &[&str], done: &[(bool, &str)]) -> (Watcher, SocketAddr, SocketAddr) {
    scenario_on("127.0.0.1:0", connect_args, done)
}

/// [`scenario`] with the server listening on `listen`.
fn scenario_on(
    listen: &str,
    connect_args: &[&str],
    done: &[(bool, &str)],
) -> (Watcher, SocketAddr, SocketAddr) {
    let _shared = WATCHERS.read().unwrap_or_else(|e| e.into_inner());
    let server = Server::start_with(&["--listen", listen, "--quiet"], &[]);
    let port = server.addr.port().to_string();
    let mut w = Watcher::start(&[], &["--port", &port]);
    let target = server.addr.to_string();
    let mut args = vec![target.as_str()];
    args.extend_from_slice(connect_args);
    let out = connect(&args);
    assert!(out.status.code().is_some(), "{out:?}");
    let client = client_of(&mut w, server.addr);
    for (on_client, to) in done {
        let local = if *on_client { client } else { server.addr };
        let remote = if *on_client { server.addr } else { client };
        w.wait_for(Duration::from_secs(10), to, |v| {
            is(v, local, to) && v["remote"] == remote.to_string()
        });
    }
    (w.stop(), server.addr, client)
}

#[test]
fn client_closes_first_time_wait_on_the_client() {
    if !support::privileged("client_closes_first_time_wait_on_the_client") {
        return;
    }
    let (w, server, client) = scenario(
        &["--send", "hello", "--close", "fin"],
        &[(true, "TIME_WAIT"), (false, "CLOSED")],
    );
    assert_sequence(&w, client, server, &ACTIVE_CLOSER);
    assert_sequence(&w, server, client, &PASSIVE_CLOSER_SERVER);
    assert!(w.transitions().all(|v| v["legal"] == true));
}

#[test]
fn ipv6_client_closes_first_time_wait_on_the_client() {
    if !support::privileged("ipv6_client_closes_first_time_wait_on_the_client") {
        return;
    }
    let (w, server, client) = scenario_on(
        "[::1]:0",
        &["--send", "hello", "--close", "fin"],
        &[(true, "TIME_WAIT"), (false, "CLOSED")],
    );
    assert!(server.is_ipv6() && client.is_ipv6());
    assert_sequence(&w, client, server, &ACTIVE_CLOSER);
    assert_sequence(&w, server, client, &PASSIVE_CLOSER_SERVER);
}

#[test]
fn server_closes_first_on_quit_time_wait_on_the_server() {
    if !support::privileged("server_closes_first_on_quit_time_wait_on_the_server") {
        return;
    }
    let (w, server, client) = scenario(
        &["--send", "quit", "--close", "wait"],
        &[(false, "TIME_WAIT"), (true, "CLOSED")],
    );
    assert_sequence(
        &w,
        server,
        client,
        &[
            "LISTEN>SYN_RECV",
            "SYN_RECV>ESTABLISHED",
            "ESTABLISHED>FIN_WAIT1",
            "FIN_WAIT1>FIN_WAIT2",
            "FIN_WAIT2>TIME_WAIT",
        ],
    );
    assert_sequence(
        &w,
        client,
        server,
        &[
            "CLOSED>SYN_SENT",
            "SYN_SENT>ESTABLISHED",
            "ESTABLISHED>CLOSE_WAIT",
            "CLOSE_WAIT>LAST_ACK",
            "LAST_ACK>CLOSED",
        ],
    );
}

#[test]
fn half_close_then_time_wait_on_the_client() {
    if !support::privileged("half_close_then_time_wait_on_the_client") {
        return;
    }
    let (w, server, client) = scenario(
        &["--send", "hello", "--close", "half"],
        &[(true, "TIME_WAIT"), (false, "CLOSED")],
    );
    assert_sequence(&w, client, server, &ACTIVE_CLOSER);
    assert_sequence(&w, server, client, &PASSIVE_CLOSER_SERVER);
    // The half-closed client was still open when the FIN came: the kernel moved it to
    // TIME_WAIT at that instant, so the change is exact, not a poll's.
    let tw = w
        .transitions()
        .find(|v| is(v, client, "TIME_WAIT"))
        .unwrap();
    assert_eq!(tw["source"], "tracepoint", "{tw}");
}

#[test]
fn abortive_close_shows_the_rst_and_its_cause() {
    if !support::privileged("abortive_close_shows_the_rst_and_its_cause") {
        return;
    }
    let (w, server, client) = scenario(
        &["--send", "hello", "--close", "rst"],
        &[(true, "CLOSED"), (false, "CLOSED")],
    );
    assert_sequence(
        &w,
        client,
        server,
        &[
            "CLOSED>SYN_SENT",
            "SYN_SENT>ESTABLISHED",
            "ESTABLISHED>CLOSED",
        ],
    );
    assert_sequence(
        &w,
        server,
        client,
        &[
            "LISTEN>SYN_RECV",
            "SYN_RECV>ESTABLISHED",
            "ESTABLISHED>CLOSED",
        ],
    );
    let c = w.transitions().find(|v| is(v, client, "CLOSED")).unwrap();
    assert_eq!(c["rst"]["direction"], "sent", "{c}");
    assert!(c["rst"]["reason"].is_string(), "{c}");
    let s = w.transitions().find(|v| is(v, server, "CLOSED")).unwrap();
    assert_eq!(s["rst"]["direction"], "received", "{s}");
    assert_eq!(
        s["rst"]["reason"], c["rst"]["reason"],
        "the peer's reason travels along"
    );
}

#[test]
fn refused_connect_shows_no_socket_reset() {
    if !support::privileged("refused_connect_shows_no_socket_reset") {
        return;
    }
    let _shared = WATCHERS.read().unwrap_or_else(|e| e.into_inner());
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut w = Watcher::start(&[], &["--port", &closed.port().to_string()]);
    let out = connect(&[&closed.to_string(), "--send", "x"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let v = w.wait_for(Duration::from_secs(10), "SYN_SENT -> CLOSED", |v| {
        v["remote"] == closed.to_string() && v["from"] == "SYN_SENT" && v["to"] == "CLOSED"
    });
    let client: SocketAddr = v["local"].as_str().unwrap().parse().unwrap();
    let w = w.stop();
    assert_sequence(&w, client, closed, &["CLOSED>SYN_SENT", "SYN_SENT>CLOSED"]);
    assert_eq!(v["rst"]["direction"], "received", "{v}");
    assert_eq!(v["rst"]["reason"], "NO_SOCKET", "{v}");
}

#[test]
fn time_wait_ends_in_closed_after_a_minute() {
    if !support::privileged("time_wait_ends_in_closed_after_a_minute") {
        return;
    }
    let _shared = WATCHERS.read().unwrap_or_else(|e| e.into_inner());
    let server = Server::start(&[]);
    let mut w = Watcher::start(&[], &["--port", &server.addr.port().to_string()]);
    let out = connect(&[
        &server.addr.to_string(),
        "--send",
        "hello",
        "--close",
        "fin",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let client = client_of(&mut w, server.addr);
    let tw = w.wait_for(Duration::from_secs(10), "TIME_WAIT", |v| {
        is(v, client, "TIME_WAIT")
    });
    let closed = w.wait_for(Duration::from_secs(90), "TIME_WAIT -> CLOSED", |v| {
        is(v, client, "CLOSED") && v["from"] == "TIME_WAIT"
    });
    assert_eq!(closed["source"], "sockdiag");
    assert_eq!(closed["poll_resolution"], true);
    let in_tw = closed["ts_ns"].as_u64().unwrap() - tw["ts_ns"].as_u64().unwrap();
    assert!(
        (55_000_000_000..70_000_000_000).contains(&in_tw),
        "TIME_WAIT lasted {in_tw} ns"
    );
    w.stop();
}

#[test]
fn three_thousand_connections_none_lost() {
    if !support::privileged("three_thousand_connections_none_lost") {
        return;
    }
    let _shared = WATCHERS.read().unwrap_or_else(|e| e.into_inner());
    const N: usize = 3000;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let mut w = Watcher::start(&[], &["--port", &server.port().to_string(), "--summary"]);
    let overflow_before = tcp_ext("TcpExt:", "TCPTimeWaitOverflow");
    let rsts_before = tcp_ext("Tcp:", "OutRsts");
    // The server reads to EOF (the client's FIN) and closes: client closes first.
    let acceptor = std::thread::spawn(move || {
        for _ in 0..N {
            let (mut s, _) = listener.accept().unwrap();
            let _ = std::io::copy(&mut s, &mut std::io::sink());
        }
    });
    for _ in 0..N {
        drop(TcpStream::connect(server).unwrap());
    }
    acceptor.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done = w.transitions().filter(|v| v["to"] == "TIME_WAIT").count();
        if done >= N || Instant::now() > deadline {
            break;
        }
        w.drain();
        std::thread::park_timeout(Duration::from_millis(50));
    }
    let w = w.stop();
    // Kernel counters for the whole namespace: other tests add to them too.
    let overflows = tcp_ext("TcpExt:", "TCPTimeWaitOverflow") - overflow_before;
    let rsts = tcp_ext("Tcp:", "OutRsts") - rsts_before;
    // Socket lives by tuple: loopback connect() may recycle a TIME_WAIT tuple
    // (tcp_tw_reuse), so one tuple can hold two lives; a life starts with its open.
    let mut per_tuple: BTreeMap<(String, String), Vec<Vec<String>>> = BTreeMap::new();
    for v in w.transitions() {
        if v["from"].is_null() {
            continue;
        }
        let tuple = (v["local"].to_string(), v["remote"].to_string());
        let step = format!(
            "{}>{}",
            v["from"].as_str().unwrap(),
            v["to"].as_str().unwrap()
        );
        let lives = per_tuple.entry(tuple).or_default();
        if lives.is_empty() || step == "CLOSED>SYN_SENT" || step == "LISTEN>SYN_RECV" {
            lives.push(Vec::new());
        }
        lives.last_mut().unwrap().push(step);
    }
    // Only the lives this test opened: sockets of earlier tests on a recycled port can
    // end here too (a TIME_WAIT that a new connect() recycles).
    let opened = |l: &Vec<String>| l[0] == "CLOSED>SYN_SENT" || l[0] == "LISTEN>SYN_RECV";
    let per_socket: Vec<((String, String), Vec<String>)> = per_tuple
        .into_iter()
        .flat_map(|(t, lives)| {
            lives
                .into_iter()
                .filter(opened)
                .map(move |l| (t.clone(), l))
        })
        .collect();
    let server_s = format!("\"{server}\"");
    let clients = per_socket.iter().filter(|((_, r), _)| *r == server_s);
    let mut n_clients = 0;
    let mut without_tw = 0;
    for ((l, _), seq) in clients {
        n_clients += 1;
        if seq.len() == 6 && seq[5] == "TIME_WAIT>CLOSED" {
            // Killed early: by an RST (a late ACK from it reached the listener after
            // the server socket was gone; RFC 1337), or recycled by a new connect().
            assert_eq!(seq[..5], ACTIVE_CLOSER, "client {l}");
        } else if seq.last().map(String::as_str) == Some("FIN_WAIT2>CLOSED") {
            // No timewait socket was found: the kernel made none (it counts that:
            // other load can fill tcp_max_tw_buckets), or an RST killed it before the
            // first poll.
            without_tw += 1;
            assert_eq!(seq[..4], ACTIVE_CLOSER[..4], "client {l}");
        } else {
            assert_eq!(
                seq,
                &ACTIVE_CLOSER,
                "client {l}; its lines:\n{}",
                w.transitions()
                    .filter(|v| v["local"].as_str() == Some(l.trim_matches('"')))
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    assert!(
        without_tw <= overflows + rsts,
        "{without_tw} clients without TIME_WAIT, but the kernel counted {overflows} overflows \
         and {rsts} RSTs sent"
    );
    let children = per_socket
        .iter()
        .filter(|((l, r), _)| *l == server_s && r != "\"0.0.0.0:0\"");
    let mut n_children = 0;
    for ((_, r), seq) in children {
        n_children += 1;
        assert_eq!(seq, &PASSIVE_CLOSER_SERVER, "child for {r}");
    }
    assert_eq!((n_clients, n_children), (N, N));
    let summary = w
        .seen
        .iter()
        .find(|v| v["kind"] == "summary")
        .expect("summary line");
    assert_eq!(summary["entered"]["SYN_SENT"], N as u64, "{summary}");
    assert_eq!(summary["entered"]["ESTABLISHED"], 2 * N as u64, "{summary}");
    assert_eq!(summary["lost"], 0, "{summary}");
    assert!(
        !w.stderr.iter().any(|l| l.contains("lost")),
        "{:?}",
        w.stderr
    );
}

#[test]
fn sigkilled_watcher_instance_is_removed_by_the_next() {
    if !support::privileged("sigkilled_watcher_instance_is_removed_by_the_next") {
        return;
    }
    let _alone = WATCHERS.write().unwrap_or_else(|e| e.into_inner());
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let mut first = Watcher::start(&[], &["--port", &port]);
    let name = first.instance().expect("instance name in the armed line");
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    assert!(
        Path::new(INSTANCES).join(&name).exists(),
        "SIGKILL should leave {name}"
    );
    let second = Watcher::start(&[], &["--port", &port]);
    assert!(
        !Path::new(INSTANCES).join(&name).exists(),
        "{name} still there"
    );
    assert!(
        second
            .stderr
            .iter()
            .any(|l| l.contains("removed stale") && l.contains(&name)),
        "{:?}",
        second.stderr
    );
    second.stop();
}

#[test]
fn forced_fallback_polls_established_and_time_wait() {
    if !support::privileged("forced_fallback_polls_established_and_time_wait") {
        return;
    }
    let _shared = WATCHERS.read().unwrap_or_else(|e| e.into_inner());
    let server = Server::start(&[]);
    let mut w = Watcher::start(
        &[],
        &["--port", &server.addr.port().to_string(), "--no-trace"],
    );
    let fallback = w.stderr.iter().find(|l| l.contains("fallback")).cloned();
    let fallback = fallback.expect("the fallback line");
    assert!(
        fallback.contains("CAP_SYS_ADMIN") && fallback.contains("may be missed"),
        "{fallback}"
    );
    let mut stream = TcpStream::connect(server.addr).unwrap();
    // Read the banner: closing with unread data would send RST, not FIN.
    let mut banner = vec![0; tcplab_core::protocol::BANNER.len()];
    std::io::Read::read_exact(&mut stream, &mut banner).unwrap();
    let client = stream.local_addr().unwrap();
    let est = w.wait_for(Duration::from_secs(10), "ESTABLISHED", |v| {
        is(v, client, "ESTABLISHED")
    });
    assert_eq!(est["source"], "sockdiag");
    drop(stream);
    w.wait_for(Duration::from_secs(10), "TIME_WAIT", |v| {
        is(v, client, "TIME_WAIT")
    });
    w.stop();
}

#[test]
fn half_open_syn_recv_from_a_silent_source_is_reported_and_stuck() {
    if !support::privileged("half_open_syn_recv_from_a_silent_source_is_reported_and_stuck") {
        return;
    }
    let _shared = WATCHERS.read().unwrap_or_else(|e| e.into_inner());
    let ns = netns::Netns::create();
    let (listener, raw) = ns.sockets();
    let server = listener.local_addr().unwrap();
    let mut w = Watcher::start(
        &["ip", "netns", "exec", ns.name()],
        &["--port", &server.port().to_string(), "--stuck", "1"],
    );
    let spoofed: SocketAddr = "192.0.2.99:40000".parse().unwrap();
    // Filtered by the peer's address only: the listener is not watched, its request
    // socket from that peer is.
    let mut by_host = Watcher::start(
        &["ip", "netns", "exec", ns.name()],
        &["--host", &spoofed.ip().to_string()],
    );
    netns::send_syn(&raw, spoofed, server);
    let v = w.wait_for(Duration::from_secs(10), "SYN_RECV", |v| {
        is(v, server, "SYN_RECV") && v["remote"] == spoofed.to_string()
    });
    assert_eq!(v["from"], "LISTEN");
    assert_eq!(v["source"], "sockdiag");
    let v = by_host.wait_for(Duration::from_secs(10), "SYN_RECV (--host)", |v| {
        is(v, server, "SYN_RECV") && v["remote"] == spoofed.to_string()
    });
    assert_eq!(v["from"], "LISTEN");
    by_host.stop();
    let stuck = w.wait_for(Duration::from_secs(10), "stuck SYN_RECV", |v| {
        v["kind"] == "stuck" && v["state"] == "SYN_RECV" && v["remote"] == spoofed.to_string()
    });
    assert_eq!(stuck["local"], server.to_string());
    w.stop();
    drop(listener);
}
