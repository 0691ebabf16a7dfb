//! Two-host mode and the impairable wire, on the real kernel (root).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use tcplab::netns::Netns;
use tcplab::twohost::{Link, TwoHost, CLIENT_V4, CLIENT_V6, SERVER_V4, SERVER_V6};
use tcplab_core::impair::{tcp_summary, Action, Rules, WireEvent};

use crate::support;

/// How long any single step may take before the test fails.
const STEP: Duration = Duration::from_secs(5);

/// Names of the links in the host's namespace that look like ours.
fn host_tcplab_links() -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .expect("run ip -o link");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("tcplab"))
        .map(str::to_string)
        .collect()
}

/// Every process or thread namespace link and open descriptor on this machine that
/// refers to network namespace `inode`.
fn holders_of(inode: u64) -> Vec<String> {
    let want = format!("net:[{inode}]");
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for p in procs.flatten() {
        let base = p.path();
        let tasks = std::fs::read_dir(base.join("task"))
            .into_iter()
            .flatten()
            .flatten();
        let mut links: Vec<_> = tasks.map(|t| t.path().join("ns/net")).collect();
        if let Ok(fds) = std::fs::read_dir(base.join("fd")) {
            links.extend(fds.flatten().map(|f| f.path()));
        }
        for link in links {
            if std::fs::read_link(&link).is_ok_and(|t| t.to_string_lossy() == want) {
                found.push(link.display().to_string());
            }
        }
    }
    found
}

/// Checks, after a set is gone, that nothing of it remains.
#[track_caller]
fn assert_nothing_left(inodes: &[u64]) {
    assert_eq!(
        host_tcplab_links(),
        Vec::<String>::new(),
        "tcplab links in the host"
    );
    for &inode in inodes {
        assert_eq!(
            holders_of(inode),
            Vec::<String>::new(),
            "namespace {inode} still held"
        );
    }
}

fn inodes(hosts: &TwoHost) -> Vec<u64> {
    vec![hosts.client.inode().unwrap(), hosts.server.inode().unwrap()]
}

/// A listener on the server host at `ip`, port chosen by the kernel.
fn listen(hosts: &TwoHost, ip: IpAddr) -> TcpListener {
    hosts
        .server
        .run(move || TcpListener::bind(SocketAddr::new(ip, 0)))
        .unwrap()
        .unwrap()
}

/// A connection from the client host.
fn connect(ns: &Netns, to: SocketAddr) -> TcpStream {
    ns.run(move || TcpStream::connect_timeout(&to, STEP))
        .unwrap()
        .unwrap()
}

/// Sends a line from the client host to an echo on the server host and reads it back.
fn echo_line(hosts: &TwoHost, ip: IpAddr) {
    let listener = listen(hosts, ip);
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        s.set_read_timeout(Some(STEP)).unwrap();
        let mut line = String::new();
        BufReader::new(s.try_clone().unwrap())
            .read_line(&mut line)
            .unwrap();
        s.write_all(line.as_bytes()).unwrap();
        peer
    });
    let mut c = connect(&hosts.client, addr);
    c.set_read_timeout(Some(STEP)).unwrap();
    c.write_all(b"hello over two hosts\n").unwrap();
    let mut back = String::new();
    BufReader::new(&c).read_line(&mut back).unwrap();
    assert_eq!(back, "hello over two hosts\n");
    let peer = server.join().unwrap();
    let client_ip: IpAddr = if ip.is_ipv4() {
        CLIENT_V4.into()
    } else {
        CLIENT_V6.into()
    };
    assert_eq!(
        peer.ip(),
        client_ip,
        "the server sees the client host's address"
    );
}

#[test]
fn echo_over_veth_v4_and_v6() {
    if !support::privileged("echo_over_veth_v4_and_v6") {
        return;
    }
    let hosts = TwoHost::new(Link::Veth).unwrap();
    let ids = inodes(&hosts);
    echo_line(&hosts, SERVER_V4.into());
    echo_line(&hosts, SERVER_V6.into());
    drop(hosts);
    assert_nothing_left(&ids);
}

#[test]
fn echo_over_the_wire_v4_and_v6() {
    if !support::privileged("echo_over_the_wire_v4_and_v6") {
        return;
    }
    let mut hosts = TwoHost::new(Link::Wire(Rules::parse("delay=2ms").unwrap())).unwrap();
    let ids = inodes(&hosts);
    echo_line(&hosts, SERVER_V4.into());
    echo_line(&hosts, SERVER_V6.into());
    let events = hosts.stop_wire().unwrap();
    let count = |f: &dyn Fn(&Action) -> bool| {
        events
            .iter()
            .filter(|e| tcp_summary(&e.bytes).is_some() && f(&e.action))
            .count()
    };
    let delayed = count(&|a| matches!(a, Action::Delay { .. }));
    let delivered = count(&|a| *a == Action::Deliver);
    let discarded = count(&|a| *a == Action::Discard);
    let other = count(&|a| !matches!(a, Action::Delay { .. } | Action::Deliver | Action::Discard));
    // Two connections: at least handshake, line, echo and the closes each way.
    assert!(delayed >= 10, "{delayed} delayed TCP segments");
    // Every delayed segment left the wire, except those in flight when it stopped.
    assert_eq!(delivered + discarded, delayed);
    assert_eq!(other, 0, "a perfect wire with delay only delays");
    drop(hosts);
    assert_nothing_left(&ids);
}
