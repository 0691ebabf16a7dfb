//! Two-host mode and the impairable wire, on the real kernel (root).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use tcplab::netns::Netns;
use tcplab::twohost::{Link, TwoHost, CLIENT_V4, CLIENT_V6, SERVER_V4, SERVER_V6};
use tcplab_core::impair::{tcp_summary, Action, Direction, Rules, WireEvent};

use crate::support;

/// How long any single step may take before the test fails.
pub(crate) const STEP: Duration = Duration::from_secs(5);

/// Names of the links in the host's namespace that look like ours.
pub(crate) fn host_tcplab_links() -> Vec<String> {
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
pub(crate) fn holders_of(inode: u64) -> Vec<String> {
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
pub(crate) fn assert_nothing_left(inodes: &[u64]) {
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

pub(crate) fn inodes(hosts: &TwoHost) -> Vec<u64> {
    vec![hosts.client.inode().unwrap(), hosts.server.inode().unwrap()]
}

/// A listener on the server host at `ip`, port chosen by the kernel.
pub(crate) fn listen(hosts: &TwoHost, ip: IpAddr) -> TcpListener {
    hosts
        .server
        .run(move || TcpListener::bind(SocketAddr::new(ip, 0)))
        .unwrap()
        .unwrap()
}

/// A connection from the client host.
pub(crate) fn connect(ns: &Netns, to: SocketAddr) -> TcpStream {
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
    let noise: Vec<_> = events
        .iter()
        .filter(|e| tcp_summary(&e.bytes).is_none())
        .collect();
    assert!(noise.is_empty(), "non-TCP packets on the wire: {noise:?}");
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

/// include/net/tcp_states.h
pub(crate) const TCP_ESTABLISHED: u8 = 1;
const TCP_CLOSING: u8 = 11;

use tcplab_core::impair::flags::FIN;

/// The kernel's state of a socket (the first byte of `struct tcp_info`).
pub(crate) fn tcp_state(s: &TcpStream) -> u8 {
    use std::os::fd::AsRawFd as _;
    let mut info = [0u8; 256];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the buffer we own.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    assert_eq!(
        rc,
        0,
        "getsockopt(TCP_INFO): {}",
        std::io::Error::last_os_error()
    );
    info[0]
}

/// Waits until `cond` holds, checking every millisecond, at most [`STEP`].
#[track_caller]
pub(crate) fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + STEP;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::park_timeout(Duration::from_millis(1));
    }
}

/// A connected pair (client side, server side) between the two hosts over IPv4.
pub(crate) fn pair(hosts: &TwoHost) -> (TcpStream, TcpStream) {
    let listener = listen(hosts, SERVER_V4.into());
    let c = connect(&hosts.client, listener.local_addr().unwrap());
    let (s, _) = listener.accept().unwrap();
    for x in [&c, &s] {
        x.set_read_timeout(Some(STEP)).unwrap();
        x.set_nodelay(true).unwrap();
    }
    (c, s)
}

#[test]
fn hold_first_fin_gives_closing_on_both_sides_five_times_in_five() {
    if !support::privileged("hold_first_fin_gives_closing_on_both_sides_five_times_in_five") {
        return;
    }
    for run in 1..=5 {
        // The delay keeps both ends in CLOSING for a while (the ACKs of the FINs take
        // 100 ms to cross), so polling TCP_INFO sees it.
        let rules = Rules::parse("hold-first-fin delay=100ms").unwrap();
        let mut hosts = TwoHost::new(Link::Wire(rules)).unwrap();
        let ids = inodes(&hosts);
        let (mut c, mut s) = pair(&hosts);
        c.shutdown(std::net::Shutdown::Write).unwrap();
        wait_for("the client's FIN held", || {
            hosts
                .wire_events_so_far()
                .iter()
                .any(|e| matches!(e.action, Action::Hold { .. }))
        });
        // A line sent by the server after the FIN left the client arrives after that
        // FIN would have (same delay both ways): the server still being ESTABLISHED
        // then shows the hold, not timing, keeps the FIN from it.
        s.write_all(b"ping\n").unwrap();
        let mut ping = [0u8; 5];
        c.read_exact(&mut ping).unwrap();
        assert_eq!(tcp_state(&s), TCP_ESTABLISHED, "run {run}");
        s.shutdown(std::net::Shutdown::Write).unwrap();
        wait_for(&format!("CLOSING on both sides (run {run})"), || {
            tcp_state(&c) == TCP_CLOSING && tcp_state(&s) == TCP_CLOSING
        });
        // Both FINs crossed: each side reads EOF.
        for mut x in [&c, &s] {
            let mut rest = Vec::new();
            x.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty());
        }
        let events = hosts.stop_wire().unwrap();
        let held: Vec<_> = events
            .iter()
            .filter(|e| matches!(e.action, Action::Hold { .. }))
            .collect();
        let fins = held
            .iter()
            .filter(|e| tcp_summary(&e.bytes).is_some_and(|t| t.has(FIN)))
            .count();
        // The client's FIN, and its ACK of the ping queued behind it.
        assert_eq!(fins, 1, "one FIN held (run {run})");
        // Each held packet went on to the server host once the server's FIN came.
        for h in &held {
            let departed = events
                .iter()
                .any(|e| e.packet == h.packet && e.action.is_departure());
            assert!(departed, "held packet {} delivered (run {run})", h.packet);
        }
        drop((c, s));
        drop(hosts);
        assert_nothing_left(&ids);
    }
}

#[test]
fn hold_syn_gives_a_simultaneous_open() {
    if !support::privileged("hold_syn_gives_a_simultaneous_open") {
        return;
    }
    let mut hosts = TwoHost::new(Link::Wire(Rules::parse("hold-syn").unwrap())).unwrap();
    let ids = inodes(&hosts);
    // Fixed ports are safe here: the namespaces are ours alone.
    let client_addr = SocketAddr::new(CLIENT_V4.into(), 40_001);
    let server_addr = SocketAddr::new(SERVER_V4.into(), 40_002);
    let open = |ns: &Netns, local: SocketAddr, remote: SocketAddr| {
        ns.spawn(move || -> std::io::Result<TcpStream> {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            s.bind(&local.into())?;
            s.connect_timeout(&remote.into(), STEP)?;
            Ok(s.into())
        })
        .unwrap()
    };
    // Whichever SYN reaches the wire first is held until the other arrives.
    let a = open(&hosts.client, client_addr, server_addr);
    let b = open(&hosts.server, server_addr, client_addr);
    let c = a.join().unwrap().unwrap().unwrap();
    let s = b.join().unwrap().unwrap().unwrap();
    assert_eq!(
        (tcp_state(&c), tcp_state(&s)),
        (TCP_ESTABLISHED, TCP_ESTABLISHED)
    );
    assert_eq!(c.peer_addr().unwrap(), server_addr);
    assert_eq!(s.peer_addr().unwrap(), client_addr);
    let events = hosts.stop_wire().unwrap();
    // Both hosts sent a SYN without ACK and a SYN,ACK: the RFC 9293 figure 7 exchange.
    use tcplab_core::impair::flags::{ACK, SYN};
    let sent = |dir, with_ack: bool| {
        events.iter().any(|e: &WireEvent| {
            e.dir == dir
                && e.action.is_departure()
                && tcp_summary(&e.bytes).is_some_and(|t| t.has(SYN) && t.has(ACK) == with_ack)
        })
    };
    use tcplab_core::impair::Direction::{ClientToServer, ServerToClient};
    for dir in [ClientToServer, ServerToClient] {
        assert!(sent(dir, false), "{dir:?} SYN");
        assert!(sent(dir, true), "{dir:?} SYN,ACK");
    }
    drop((c, s));
    drop(hosts);
    assert_nothing_left(&ids);
}

/// One dropped segment: direction, its index among its direction's segments, flags,
/// sequence number relative to that direction's SYN, payload length.
type Dropped = (Direction, usize, u16, u32, usize);

/// Twenty lock-step echoes and a close over a lossy wire; the segments the wire lost.
fn lossy_run(spec: &str) -> Vec<Dropped> {
    let mut hosts = TwoHost::new(Link::Wire(Rules::parse(spec).unwrap())).unwrap();
    let ids = inodes(&hosts);
    let (mut c, mut s) = pair(&hosts);
    for i in 0..20 {
        let line = format!("line {i:02}\n");
        c.write_all(line.as_bytes()).unwrap();
        let mut got = [0u8; 8];
        s.read_exact(&mut got).unwrap();
        s.write_all(&got).unwrap();
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, line.as_bytes());
    }
    c.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(s.read(&mut [0u8; 1]).unwrap(), 0);
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(c.read(&mut [0u8; 1]).unwrap(), 0);
    let events = hosts.stop_wire().unwrap();
    drop((c, s));
    drop(hosts);
    assert_nothing_left(&ids);

    let mut index = [0usize; 2];
    let mut isn: [Option<u32>; 2] = [None; 2];
    let mut dropped = Vec::new();
    for e in &events {
        let Some(t) = tcp_summary(&e.bytes) else {
            continue;
        };
        // Arrival decisions only (with loss alone: forward or drop).
        if !matches!(e.action, Action::Forward | Action::Drop { .. }) {
            continue;
        }
        let d = e.dir.index();
        index[d] += 1;
        if t.has(tcplab_core::impair::flags::SYN) {
            isn[d].get_or_insert(t.seq);
        }
        if matches!(e.action, Action::Drop { .. }) {
            let rel = t.seq.wrapping_sub(isn[d].unwrap_or(t.seq));
            dropped.push((e.dir, index[d], t.flags, rel, t.payload_len));
        }
    }
    dropped
}

#[test]
fn seeded_loss_drops_the_same_segments_twice() {
    if !support::privileged("seeded_loss_drops_the_same_segments_twice") {
        return;
    }
    // Seed 5 at 5% loses the 13th segment of each direction: mid-transfer, after the
    // handshake, so each loss costs one RTO (~0.2 s), not the 1 s SYN timeout.
    let spec = "loss=5% seed=5";
    let first = lossy_run(spec);
    let second = lossy_run(spec);
    assert_eq!(first.len(), 2, "{first:?}");
    // The wire's promise is per segment index (the n-th segment of a direction meets
    // the same fate); which bytes that segment carries is the kernel's timing (a reply
    // may leave alone or with the ACK of a request), so the relative seq is not compared.
    let fate = |d: &[Dropped]| -> Vec<(Direction, usize, u16)> {
        d.iter()
            .map(|&(dir, n, flags, _, _)| (dir, n, flags))
            .collect()
    };
    assert_eq!(fate(&first), fate(&second), "{first:?} vs {second:?}");
}

/// Set in the environment of the child that [`a_killed_holder_leaves_nothing_behind`]
/// starts.
const HOLDER_ENV: &str = "TCPLAB_TEST_TWOHOST_HOLDER";

/// Not a test by itself: in the child process, builds both kinds of two-host sets with
/// a connection in each, says so, and waits to be killed.
#[test]
fn two_host_holder_child() {
    if std::env::var_os(HOLDER_ENV).is_none() {
        return;
    }
    let veth = TwoHost::new(Link::Veth).unwrap();
    let wire = TwoHost::new(Link::Wire(Rules::parse("delay=1ms").unwrap())).unwrap();
    let _pairs = (pair(&veth), pair(&wire));
    let ids: Vec<String> = [&veth, &wire]
        .iter()
        .flat_map(|h| inodes(h))
        .map(|i| i.to_string())
        .collect();
    println!("ready {}", ids.join(" "));
    std::io::stdout().flush().unwrap();
    // Wait for the parent's SIGKILL (or for its end, if the parent dies first).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

#[test]
fn a_killed_holder_leaves_nothing_behind() {
    if !support::privileged("a_killed_holder_leaves_nothing_behind") {
        return;
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "twohost::two_host_holder_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HOLDER_ENV, "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the child (by its PID, which we started) even if an assertion fails.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let mut child = Kill(child);
    let ids: Vec<u64> = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        // libtest prints "test NAME ... " before the test's own output, on the same line.
        .find_map(|l| l.split_once("ready ").map(|(_, ids)| ids.to_string()))
        .expect("the child built its sets")
        .split(' ')
        .map(|i| i.parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 4);
    for &inode in &ids {
        assert!(
            !holders_of(inode).is_empty(),
            "the child holds namespace {inode}"
        );
    }
    child.0.kill().unwrap(); // SIGKILL: no destructor of the child runs
    child.0.wait().unwrap();
    // The kernel drops the namespaces once the dead process's descriptors are closed,
    // which exit does; nothing of ours can keep them.
    wait_for("the killed child's namespaces to be unreferenced", || {
        ids.iter().all(|&i| holders_of(i).is_empty())
    });
    assert_nothing_left(&ids);
    assert!(
        std::fs::read_dir("/run/netns")
            .map(|d| d
                .flatten()
                .all(|e| !e.file_name().to_string_lossy().contains("tcplab")))
            .unwrap_or(true),
        "no named namespace of tcplab"
    );
}

#[test]
fn sysctls_are_set_inside_the_hosts_never_on_the_machine() {
    if !support::privileged("sysctls_are_set_inside_the_hosts_never_on_the_machine") {
        return;
    }
    let name = "net.ipv4.tcp_fin_timeout";
    let host_before = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_fin_timeout").unwrap();
    let hosts = TwoHost::new(Link::Veth).unwrap();
    hosts.set_sysctl(name, "7").unwrap();
    assert_eq!(hosts.client.sysctl(name).unwrap(), "7");
    assert_eq!(hosts.server.sysctl(name).unwrap(), "7");
    let host_after = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_fin_timeout").unwrap();
    assert_eq!(host_after, host_before);
    // The snapshot a scenario records, read inside.
    let inside = hosts.client.run(tcplab::sysctl::snapshot).unwrap();
    let fin = inside.iter().find(|v| v.name == name).unwrap();
    assert_eq!(fin.value.as_deref(), Some("7"));
    // Names outside net.* are refused: they are not per namespace.
    let err = hosts.client.set_sysctl("kernel.hostname", "x").unwrap_err();
    assert!(err.to_string().contains("only net.*"), "{err}");
    // A global net sysctl does not exist inside a namespace: the write cannot reach
    // the host's.
    let err = hosts
        .client
        .set_sysctl("net.ipv4.tcp_max_orphans", "1")
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
}
