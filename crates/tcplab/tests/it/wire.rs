//! The wire's scenario rules on the real kernel: what each makes the kernel do.

use std::io::{Read as _, Write as _};
use std::net::Shutdown;

use tcplab::twohost::{Link, TwoHost, SERVER_V4};
use tcplab_core::impair::flags::{ACK, SYN};
use tcplab_core::impair::{tcp_summary, Action, Direction, DropReason, Rules};

use crate::support;
use crate::twohost::{assert_nothing_left, connect, inodes, listen, pair, wait_for, STEP};

/// include/net/tcp_states.h
const TCP_SYN_RECV: u8 = 3;

/// States (as in /proc/net/tcp) of the sockets of the namespace of the calling thread
/// whose local or remote port is `port`. /proc/net is the process's namespace;
/// /proc/thread-self/net is the thread's.
fn states_with_port(port: u16) -> Vec<u8> {
    let text = std::fs::read_to_string("/proc/thread-self/net/tcp").unwrap();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let port_of = |x: &str| u16::from_str_radix(x.rsplit(':').next()?, 16).ok();
            let (local, remote) = (port_of(f.get(1)?)?, port_of(f.get(2)?)?);
            let state = u8::from_str_radix(f.get(3)?, 16).ok()?;
            (local == port || remote == port).then_some(state)
        })
        .collect()
}

#[test]
fn drop_third_ack_leaves_the_server_in_syn_recv_until_data_arrives() {
    if !support::privileged("drop_third_ack_leaves_the_server_in_syn_recv_until_data_arrives") {
        return;
    }
    let hosts = TwoHost::new(Link::Wire(Rules::parse("drop-third-ack").unwrap())).unwrap();
    let ids = inodes(&hosts);
    let listener = listen(&hosts, SERVER_V4.into());
    let addr = listener.local_addr().unwrap();
    // The client's connect() completes: it got the SYN,ACK.
    let mut c = connect(&hosts.client, addr);
    let server_states = || {
        hosts
            .server
            .run(move || states_with_port(addr.port()))
            .unwrap()
    };
    wait_for("the half-open request socket", || {
        server_states().contains(&TCP_SYN_RECV)
    });
    // The SYN,ACK is retransmitted (after 1 s) and every re-ACK is lost too.
    wait_for("a second lost third ACK", || {
        hosts
            .wire_events_so_far()
            .iter()
            .filter(|e| {
                e.action
                    == (Action::Drop {
                        reason: DropReason::ThirdAck,
                    })
            })
            .count()
            >= 2
    });
    assert!(server_states().contains(&TCP_SYN_RECV));
    // Data carries the same ACK and is not lost: the handshake completes with it.
    c.write_all(b"hi").unwrap();
    let (mut s, _) = listener.accept().unwrap();
    s.set_read_timeout(Some(STEP)).unwrap();
    let mut got = [0u8; 2];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hi");
    drop((c, s, listener));
    drop(hosts);
    assert_nothing_left(&ids);
}

#[test]
fn drop_n_makes_the_kernel_retransmit_that_segment() {
    if !support::privileged("drop_n_makes_the_kernel_retransmit_that_segment") {
        return;
    }
    // Client to server: SYN (1), ACK (2), "one" (3), "two" (4).
    let mut hosts = TwoHost::new(Link::Wire(Rules::parse("drop=4").unwrap())).unwrap();
    let ids = inodes(&hosts);
    let (mut c, mut s) = pair(&hosts);
    let mut got = [0u8; 4];
    c.write_all(b"one\n").unwrap();
    s.read_exact(&mut got).unwrap();
    c.write_all(b"two\n").unwrap();
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"two\n");
    let events = hosts.stop_wire().unwrap();
    let c2s: Vec<_> = events
        .iter()
        .filter(|e| e.dir == Direction::ClientToServer)
        .filter_map(|e| Some((e.action, tcp_summary(&e.bytes)?)))
        .collect();
    let (_, lost) = c2s
        .iter()
        .find(|(a, _)| {
            *a == (Action::Drop {
                reason: DropReason::Nth { n: 4 },
            })
        })
        .expect("the 4th segment dropped");
    assert_eq!(lost.payload_len, 4);
    let resent = c2s
        .iter()
        .filter(|(a, t)| *a == Action::Forward && t.seq == lost.seq && t.payload_len == 4)
        .count();
    assert_eq!(resent, 1, "the kernel retransmitted it once");
    drop((c, s));
    drop(hosts);
    assert_nothing_left(&ids);
}

#[test]
fn an_impaired_wire_still_delivers_a_stream_intact() {
    if !support::privileged("an_impaired_wire_still_delivers_a_stream_intact") {
        return;
    }
    let rules = Rules::parse("delay=1ms loss=2% reorder=2% dup=2% seed=3").unwrap();
    let mut hosts = TwoHost::new(Link::Wire(rules)).unwrap();
    let ids = inodes(&hosts);
    let (mut c, mut s) = pair(&hosts);
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        c.write_all(&sent).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        c
    });
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    let c = writer.join().unwrap();
    assert!(
        got == data,
        "{} bytes received of {}",
        got.len(),
        data.len()
    );
    let events = hosts.stop_wire().unwrap();
    let n = |f: &dyn Fn(&Action) -> bool| events.iter().filter(|e| f(&e.action)).count();
    assert!(
        n(&|a| matches!(a, Action::Drop { .. })) > 0,
        "something lost"
    );
    assert!(
        n(&|a| matches!(a, Action::Reorder { .. })) > 0,
        "something reordered"
    );
    assert!(n(&|a| *a == Action::Duplicate) > 0, "something duplicated");
    // The handshake went through the wire as seen.
    assert!(events
        .iter()
        .any(|e| tcp_summary(&e.bytes).is_some_and(|t| t.has(SYN) && t.has(ACK))));
    drop((c, s));
    drop(hosts);
    assert_nothing_left(&ids);
}
