//! Tests of the correlator, from recorded tracepoint and sock_diag observations.

use super::*;
use crate::probe::sockdiag::DiagSocket;

const C: &str = "127.0.0.1:40000";
const S: &str = "127.0.0.1:54321";
const MS: u64 = 1_000_000;

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn set(ts_ms: u64, local: &str, remote: &str, old: u32, new: u32) -> TraceEvent {
    TraceEvent::SetState {
        ts_ns: ts_ms * MS,
        local: a(local),
        remote: a(remote),
        old,
        new,
    }
}

fn tw(local: &str, remote: &str, state: u8, expires_ms: u32) -> DiagSocket {
    DiagSocket {
        state,
        local: a(local),
        remote: a(remote),
        cookie: 99,
        inode: 0,
        timer: 3,
        expires_ms,
        retrans: 0,
    }
}

/// The sequence of (from, to) released for `local`.
#[track_caller]
fn sequence(out: &[Released], local: &str) -> Vec<String> {
    out.iter()
        .filter(|r| r.change.local == a(local))
        .map(|r| {
            let from = r.change.from.map_or("-".to_string(), |f| f.to_string());
            format!("{from}>{}", r.change.to)
        })
        .collect()
}

#[track_caller]
fn assert_seq(out: &[Released], local: &str, expected: &[&str]) {
    assert_eq!(sequence(out, local), expected, "sequence of {local}");
}

mod client_closes_first {
    use super::*;

    fn run(tw_expires_ms: u32) -> Vec<Released> {
        let mut k = Correlator::new(2 * MS);
        for ev in [
            set(1, "127.0.0.1:0", S, 7, 2),
            set(2, C, S, 2, 1),
            set(2, S, C, 10, 3),
            set(2, S, C, 3, 1),
            set(10, C, S, 1, 4),
            set(10, S, C, 1, 8),
            set(10, C, S, 4, 5),
            set(10, C, S, 5, 7),
        ] {
            k.on_trace(ev);
        }
        assert!(k.needs_mini_poll());
        // The poll at 11 ms finds the timewait socket.
        k.on_mini_poll(11 * MS, &[tw(C, S, 6, tw_expires_ms)]);
        k.on_trace(set(210, S, C, 8, 9));
        k.on_trace(set(210, S, C, 9, 7));
        k.release(u64::MAX)
    }

    #[test]
    fn time_wait_at_the_close_when_the_fin_came_with_it() {
        let out = run(59_999);
        assert_seq(
            &out,
            C,
            &[
                "CLOSED>SYN_SENT",
                "SYN_SENT>ESTABLISHED",
                "ESTABLISHED>FIN_WAIT1",
                "FIN_WAIT1>FIN_WAIT2",
                "FIN_WAIT2>TIME_WAIT",
            ],
        );
        let last = &out.iter().rfind(|r| r.change.local == a(C)).unwrap().change;
        assert_eq!(last.ts_ns, 10 * MS);
        assert_eq!(last.source, Source::Tracepoint);
        assert!(last
            .linux
            .as_deref()
            .unwrap()
            .contains("FIN_WAIT2 -> CLOSE"));
        assert_seq(
            &out,
            S,
            &[
                "LISTEN>SYN_RECV",
                "SYN_RECV>ESTABLISHED",
                "ESTABLISHED>CLOSE_WAIT",
                "CLOSE_WAIT>LAST_ACK",
                "LAST_ACK>CLOSED",
            ],
        );
    }

    #[test]
    fn fin_wait2_mini_socket_then_time_wait_by_poll() {
        let mut k = Correlator::new(2 * MS);
        k.on_trace(set(10, C, S, 4, 5));
        k.on_trace(set(10, C, S, 5, 7));
        k.on_mini_poll(11 * MS, &[tw(C, S, 5, 59_999)]);
        // 200 ms later the FIN arrived: TIME_WAIT's timer shows it began at ~210 ms.
        k.on_mini_poll(230 * MS, &[tw(C, S, 6, 59_980)]);
        let out = k.release(u64::MAX);
        assert_seq(&out, C, &["FIN_WAIT1>FIN_WAIT2", "FIN_WAIT2>TIME_WAIT"]);
        let c = &out[1].change;
        assert!(c.poll_resolution);
        assert_eq!(c.ts_ns, 210 * MS);
    }

    #[test]
    fn fin_wait2_mini_socket_dated_by_the_local_peers_fin() {
        let mut k = Correlator::new(2 * MS);
        k.on_trace(set(10, C, S, 5, 7));
        k.on_mini_poll(11 * MS, &[tw(C, S, 5, 59_999)]);
        k.on_trace(set(210, S, C, 8, 9));
        assert!(k.needs_mini_poll());
        k.on_mini_poll(211 * MS, &[tw(C, S, 6, 59_996)]);
        k.on_trace(set(211, S, C, 9, 7));
        let out = k.release(u64::MAX);
        let tw_at = out
            .iter()
            .find(|r| r.change.to == TcpState::TimeWait)
            .unwrap();
        assert_eq!(tw_at.change.ts_ns, 210 * MS);
        assert!(!k.needs_mini_poll());
    }

    #[test]
    fn found_change_redated_by_the_peer_fin_read_later() {
        let mut k = Correlator::new(2 * MS);
        k.on_trace(set(10, C, S, 5, 7));
        k.on_mini_poll(11 * MS, &[tw(C, S, 5, 59_999)]);
        // The poll sees TIME_WAIT before we read the peer's LAST_ACK line.
        k.on_mini_poll(215 * MS, &[tw(C, S, 6, 59_990)]);
        assert!(k
            .release(216 * MS)
            .iter()
            .all(|r| r.change.to != TcpState::TimeWait));
        k.on_trace(set(212, S, C, 8, 9));
        let out = k.release(u64::MAX);
        let tw_at = out
            .iter()
            .find(|r| r.change.to == TcpState::TimeWait)
            .unwrap();
        assert_eq!(tw_at.change.ts_ns, 212 * MS);
    }

    #[test]
    fn poll_ahead_of_the_trace_lines_reports_time_wait_once() {
        let mut k = Correlator::new(0);
        // The poll sees the FIN_WAIT2 mini-socket before we read the CLOSE line.
        k.on_mini_poll(11 * MS, &[tw(C, S, 5, 59_999)]);
        k.on_trace(set(10, C, S, 5, 7));
        k.on_mini_poll(12 * MS, &[tw(C, S, 5, 59_998)]);
        k.on_trace(set(15, S, C, 8, 9));
        k.on_mini_poll(16 * MS, &[tw(C, S, 6, 59_999)]);
        k.on_mini_poll(17 * MS, &[tw(C, S, 6, 59_999)]);
        let out = k.release(u64::MAX);
        assert_seq(&out, C, &["FIN_WAIT2>TIME_WAIT"]);
        assert_eq!(
            out.iter()
                .find(|r| r.change.local == a(C))
                .unwrap()
                .change
                .ts_ns,
            15 * MS
        );
    }

    #[test]
    fn time_wait_seen_before_its_close_line_waits_for_it() {
        let mut k = Correlator::new(0);
        k.on_mini_poll(11 * MS, &[tw(C, S, 6, 59_999)]);
        k.on_trace(set(10, C, S, 4, 7));
        k.on_mini_poll(12 * MS, &[tw(C, S, 6, 59_998)]);
        let out = k.release(u64::MAX);
        assert_seq(&out, C, &["FIN_WAIT1>TIME_WAIT"]);
        assert_eq!(out[0].change.source, Source::Tracepoint);
    }

    #[test]
    fn a_lagging_reader_dates_time_wait_by_the_held_peer_fin() {
        let mut k = Correlator::new(2 * MS);
        // Both lines read at once, long after: the poll sees TIME_WAIT directly.
        k.on_trace(set(10, C, S, 5, 7));
        k.on_trace(set(210, S, C, 8, 9));
        k.on_mini_poll(2_000 * MS, &[tw(C, S, 6, 58_200)]);
        let out = k.release(u64::MAX);
        let tw_at = out
            .iter()
            .find(|r| r.change.to == TcpState::TimeWait)
            .unwrap();
        assert_eq!(tw_at.change.ts_ns, 210 * MS);
    }

    #[test]
    fn time_wait_then_closed_when_the_mini_socket_goes() {
        let mut k = Correlator::new(0);
        k.on_trace(set(10, C, S, 5, 7));
        k.on_mini_poll(11 * MS, &[tw(C, S, 6, 59_999)]);
        k.on_mini_poll(60_005 * MS, &[tw(C, S, 6, 5)]);
        // A dump can skip a socket: gone means missing from three polls in a row.
        k.on_mini_poll(60_020 * MS, &[]);
        k.on_mini_poll(60_030 * MS, &[]);
        k.on_mini_poll(60_040 * MS, &[]);
        let out = k.release(u64::MAX);
        assert_seq(&out, C, &["FIN_WAIT2>TIME_WAIT", "TIME_WAIT>CLOSED"]);
        assert_eq!(out[1].change.ts_ns, 60_010 * MS);
        assert_eq!(out[1].in_prev_ns, Some(60_000 * MS));
    }
}

mod resets {
    use super::*;

    #[test]
    fn refused_connect_gets_port_and_peer_reason() {
        let mut k = Correlator::new(0);
        k.on_trace(set(1, "127.0.0.1:0", "127.0.0.1:1", 7, 2));
        k.on_trace(TraceEvent::SendReset {
            ts_ns: 2 * MS,
            local: Some(a("127.0.0.1:1")),
            remote: Some(a(C)),
            reason: "NO_SOCKET".into(),
        });
        k.on_trace(TraceEvent::ReceiveReset {
            ts_ns: 2 * MS,
            local: a(C),
            remote: a("127.0.0.1:1"),
            cookie: None,
        });
        k.on_trace(set(2, C, "127.0.0.1:1", 2, 7));
        let out = k.release(u64::MAX);
        assert_seq(&out, C, &["CLOSED>SYN_SENT", "SYN_SENT>CLOSED"]);
        let rst = out[1].change.rst.clone().unwrap();
        assert_eq!(rst.direction, RstDirection::Received);
        assert_eq!(rst.reason.as_deref(), Some("NO_SOCKET"));
        assert_eq!(out[1].in_prev_ns, Some(MS));
    }

    #[test]
    fn abort_sent_after_the_close_still_attaches() {
        let mut k = Correlator::new(2 * MS);
        k.on_trace(set(5, C, S, 1, 7));
        k.on_trace(TraceEvent::SendReset {
            ts_ns: 5 * MS,
            local: Some(a(C)),
            remote: Some(a(S)),
            reason: "TCP_ABORT_ON_CLOSE".into(),
        });
        let out = k.release(10 * MS);
        let rst = out[0].change.rst.clone().unwrap();
        assert_eq!(rst.direction, RstDirection::Sent);
        assert_eq!(rst.reason.as_deref(), Some("TCP_ABORT_ON_CLOSE"));
    }

    #[test]
    fn rst_to_a_vanished_timewait_socket_shows_time_wait_then_closed() {
        let mut k = Correlator::new(0);
        k.on_trace(set(5, C, S, 5, 7));
        k.on_trace(TraceEvent::SendReset {
            ts_ns: 7 * MS,
            local: Some(a(S)),
            remote: Some(a(C)),
            reason: "NO_SOCKET".into(),
        });
        for ms in 8..11 {
            k.on_mini_poll(ms * MS, &[]);
        }
        let out = k.release(u64::MAX);
        assert_seq(&out, C, &["FIN_WAIT2>TIME_WAIT", "TIME_WAIT>CLOSED"]);
        let rst = out[1].change.rst.clone().unwrap();
        assert_eq!(
            (rst.direction, rst.reason.as_deref()),
            (RstDirection::Received, Some("NO_SOCKET"))
        );
        assert_eq!(out[1].change.ts_ns, 7 * MS);
    }

    #[test]
    fn listener_rst_explains_a_vanished_timewait_socket() {
        let mut k = Correlator::new(0);
        k.on_trace(set(5, C, S, 5, 7));
        k.on_trace(TraceEvent::SendReset {
            ts_ns: 7 * MS,
            local: Some(a(S)),
            remote: Some(a("0.0.0.0:0")),
            reason: "TCP_FLAGS".into(),
        });
        for ms in 8..11 {
            k.on_mini_poll(ms * MS, &[]);
        }
        let out = k.release(u64::MAX);
        assert_seq(&out, C, &["FIN_WAIT2>TIME_WAIT", "TIME_WAIT>CLOSED"]);
        assert_eq!(
            out[1].change.rst.as_ref().unwrap().reason.as_deref(),
            Some("TCP_FLAGS, from the listener")
        );
    }

    #[test]
    fn fin_wait2_close_without_timewait_is_closed() {
        let mut k = Correlator::new(0);
        k.on_trace(set(5, C, S, 5, 7));
        k.on_trace(set(6, S, C, 9, 7));
        k.on_mini_poll(6 * MS, &[]);
        k.on_mini_poll(7 * MS, &[]);
        // Unresolved, the CLOSE holds back what came after it.
        assert!(k.release(u64::MAX).is_empty());
        k.on_mini_poll(8 * MS, &[]);
        let out = k.release(u64::MAX);
        assert_seq(&out, C, &["FIN_WAIT2>CLOSED"]);
    }
}

mod half_open {
    use super::*;

    fn req(remote: &str) -> DiagSocket {
        DiagSocket {
            state: 3,
            local: a(S),
            remote: a(remote),
            cookie: 5,
            inode: 0,
            timer: 1,
            expires_ms: 900,
            retrans: 0,
        }
    }

    #[test]
    fn request_socket_polled_just_after_its_child_was_traced_is_not_repeated() {
        // The child's tracepoint fires just before it replaces the request socket in
        // the hash table: a poll in between still shows the request socket.
        let mut k = Correlator::new(0);
        k.on_trace(set(2, S, C, 10, 3));
        k.on_mini_poll(2 * MS, &[req(C)]);
        k.on_trace(set(2, S, C, 3, 1));
        let out = k.release(u64::MAX);
        assert_seq(&out, S, &["LISTEN>SYN_RECV", "SYN_RECV>ESTABLISHED"]);
        assert_eq!(out[0].change.source, Source::Tracepoint);
    }

    #[test]
    fn a_simultaneous_opens_full_syn_recv_socket_is_not_a_request_socket() {
        // Seen by a poll while its own SYN_SENT -> SYN_RECV is still held: it has a
        // file (an inode), a request socket has none.
        let mut k = Correlator::new(5 * MS);
        k.on_trace(set(1, C, S, 7, 2));
        k.on_trace(set(2, C, S, 2, 3));
        let mut full = req(C);
        (full.local, full.remote, full.inode) = (a(C), a(S), 4242);
        k.on_mini_poll(3 * MS, &[full]);
        k.on_trace(set(4, C, S, 3, 1));
        k.on_mini_poll(5 * MS, &[]);
        k.on_mini_poll(6 * MS, &[]);
        k.on_mini_poll(7 * MS, &[]);
        let out = k.release(u64::MAX);
        assert_seq(
            &out,
            C,
            &[
                "CLOSED>SYN_SENT",
                "SYN_SENT>SYN_RECV",
                "SYN_RECV>ESTABLISHED",
            ],
        );
    }

    #[test]
    fn request_socket_reported_once_and_child_not_repeated() {
        let mut k = Correlator::new(0);
        k.on_mini_poll(MS, &[req(C)]);
        k.on_trace(set(2, S, C, 10, 3));
        k.on_trace(set(2, S, C, 3, 1));
        k.on_mini_poll(3 * MS, &[]);
        k.on_mini_poll(4 * MS, &[]);
        let out = k.release(u64::MAX);
        assert_seq(&out, S, &["LISTEN>SYN_RECV", "SYN_RECV>ESTABLISHED"]);
        assert_eq!(out[0].change.source, Source::Sockdiag);
    }

    #[test]
    fn request_socket_stays_reported_once_across_releases() {
        let mut k = Correlator::new(0);
        let mut out = Vec::new();
        for ms in 1..5 {
            k.on_mini_poll(ms * MS, &[req(C)]);
            out.extend(k.release(ms * MS));
        }
        assert_seq(&out, S, &["LISTEN>SYN_RECV"]);
        assert_eq!(k.conns()[&(a(S), a(C))].state, TcpState::SynRecv);
    }

    #[test]
    fn request_socket_dated_by_its_syn_ack_timer() {
        let mut k = Correlator::new(0);
        // One SYN,ACK retransmitted: the timer (2 s) ends 3 s after the SYN; 1.5 s left.
        let mut r = req(C);
        r.retrans = 1;
        r.expires_ms = 1500;
        k.on_mini_poll(10_000 * MS, &[r]);
        let out = k.release(u64::MAX);
        assert_eq!(out[0].change.ts_ns, 8_500 * MS);
        // Before any retransmission: 900 ms left of 1 s.
        let mut k = Correlator::new(0);
        k.on_mini_poll(10_000 * MS, &[req(C)]);
        assert_eq!(k.release(u64::MAX)[0].change.ts_ns, 9_900 * MS);
    }

    #[test]
    fn dropped_request_socket_closes() {
        let mut k = Correlator::new(0);
        k.on_mini_poll(MS, &[req(C)]);
        for ms in 2..5 {
            k.on_mini_poll(ms * MS, &[]);
        }
        let out = k.release(u64::MAX);
        assert_seq(&out, S, &["LISTEN>SYN_RECV", "SYN_RECV>CLOSED"]);
    }
}

mod fallback {
    use super::*;

    fn full(state: u8, cookie: u64) -> DiagSocket {
        DiagSocket {
            state,
            local: a(C),
            remote: a(S),
            cookie,
            inode: 1,
            timer: 0,
            expires_ms: 0,
            retrans: 0,
        }
    }

    #[test]
    fn polls_find_changes_by_cookie() {
        let mut k = Correlator::new(0);
        k.on_full_poll(MS, &[full(1, 7)]);
        k.on_full_poll(2 * MS, &[full(1, 7)]);
        k.on_full_poll(3 * MS, &[tw(C, S, 6, 100)]);
        for ms in 4..7 {
            k.on_full_poll(ms * MS, &[]);
        }
        let out = k.release(u64::MAX);
        // Cookie 7 became cookie 99 in `tw`: a different socket to the poll. Each counts
        // as gone after three polls without it.
        assert_seq(
            &out,
            C,
            &[
                "->ESTABLISHED",
                "->TIME_WAIT",
                "ESTABLISHED>CLOSED",
                "TIME_WAIT>CLOSED",
            ],
        );
        assert!(out.iter().all(|r| r.change.poll_resolution));
    }

    #[test]
    fn same_cookie_gives_a_transition() {
        let mut k = Correlator::new(0);
        k.on_full_poll(MS, &[full(1, 99)]);
        k.on_full_poll(2 * MS, &[tw(C, S, 6, 100)]);
        let out = k.release(u64::MAX);
        assert_seq(&out, C, &["->ESTABLISHED", "ESTABLISHED>TIME_WAIT"]);
    }
}

#[test]
fn a_connect_recycling_a_time_wait_tuple_closes_the_old_socket_first() {
    let mut k = Correlator::new(0);
    k.on_trace(set(10, C, S, 5, 7));
    k.on_mini_poll(11 * MS, &[tw(C, S, 6, 59_999)]);
    k.on_trace(set(2_000, "127.0.0.1:0", S, 7, 2));
    k.on_trace(set(2_001, C, S, 2, 1));
    let out = k.release(u64::MAX);
    assert_seq(
        &out,
        C,
        &[
            "FIN_WAIT2>TIME_WAIT",
            "TIME_WAIT>CLOSED",
            "CLOSED>SYN_SENT",
            "SYN_SENT>ESTABLISHED",
        ],
    );
    assert!(out[1]
        .change
        .linux
        .as_deref()
        .unwrap()
        .contains("tcp_tw_reuse"));
}

#[test]
fn hold_window_keeps_recent_changes() {
    let mut k = Correlator::new(5 * MS);
    k.on_trace(set(10, C, S, 1, 4));
    assert!(k.release(14 * MS).is_empty());
    assert_eq!(k.release(15 * MS).len(), 1);
}

#[test]
fn unresolved_syn_sent_waits_for_its_port_without_holding_others() {
    let mut k = Correlator::new(MS);
    k.on_trace(set(10, "127.0.0.1:0", S, 7, 2));
    k.on_trace(set(11, S, "127.0.0.1:1", 1, 8));
    let out = k.release(2_000 * MS);
    assert_seq(&out, S, &["ESTABLISHED>CLOSE_WAIT"]);
    assert!(sequence(&out, "127.0.0.1:0").is_empty());
    // The SYN was retransmitted after 1 s: the retransmission names the port.
    k.on_trace(TraceEvent::Retransmit {
        ts_ns: 1_010 * MS,
        local: a(C),
        remote: a(S),
    });
    k.on_trace(set(1_011, C, S, 2, 1));
    let out = k.release(3_000 * MS);
    assert_seq(&out, C, &["CLOSED>SYN_SENT", "SYN_SENT>ESTABLISHED"]);
    assert_eq!(out[0].change.ts_ns, 10 * MS);
}

#[test]
fn unresolved_syn_sent_leaves_at_exit() {
    let mut k = Correlator::new(MS);
    k.on_trace(set(10, "127.0.0.1:0", S, 7, 2));
    assert_eq!(k.release_all()[0].change.local, a("127.0.0.1:0"));
}

/// A new connection on the tuple of a TIME_WAIT socket (tcp_tw_reuse): two lives of one
/// tuple, never mixed.
mod recycled_tuple {
    use super::*;

    #[track_caller]
    fn run(syn_local: &str) {
        let mut k = Correlator::new(0);
        k.on_snapshot(MS, &[tw(C, S, 6, 30_000)]);
        k.on_trace(set(10, syn_local, S, 7, 2));
        k.on_trace(set(11, C, S, 2, 1));
        k.on_trace(set(12, C, S, 1, 4));
        k.on_trace(set(13, C, S, 4, 5));
        let out = k.release(u64::MAX);
        assert_seq(
            &out,
            C,
            &[
                "->TIME_WAIT",
                "TIME_WAIT>CLOSED",
                "CLOSED>SYN_SENT",
                "SYN_SENT>ESTABLISHED",
                "ESTABLISHED>FIN_WAIT1",
                "FIN_WAIT1>FIN_WAIT2",
            ],
        );
        let recycled = &out[1].change;
        assert!(recycled.ts_ns < 10 * MS, "{recycled:?}");
        assert_eq!(recycled.cookie, Some(99), "the old socket's cookie");
        // The new socket inherits nothing of the old one.
        for r in &out[2..] {
            assert_eq!(r.change.cookie, None, "{r:?}");
        }
        assert_eq!(
            out[3].in_prev_ns,
            Some(MS),
            "time in SYN_SENT of the new socket"
        );
    }

    #[test]
    fn connect_from_an_ephemeral_port() {
        run("127.0.0.1:0");
    }

    #[test]
    fn connect_from_a_bound_port() {
        run(C);
    }
}

/// A poll sees a connection's mini-socket while the trace lines of that connection are
/// still unread in the ring (the reader lags under churn): what the poll saw waits for
/// those lines, and each change is reported once, in its place.
mod lagging_reader {
    use super::*;

    /// The lines of one client connection that closes first, from `t0` ms, with its
    /// CLOSE at `t0 + 4` ms.
    fn client_life(k: &mut Correlator, t0: u64) {
        for ev in [
            set(t0, "127.0.0.1:0", S, 7, 2),
            set(t0 + 1, C, S, 2, 1),
            set(t0 + 2, C, S, 1, 4),
            set(t0 + 3, C, S, 4, 5),
            set(t0 + 4, C, S, 5, 7),
        ] {
            k.on_trace(ev);
        }
    }

    const LIFE: [&str; 5] = [
        "CLOSED>SYN_SENT",
        "SYN_SENT>ESTABLISHED",
        "ESTABLISHED>FIN_WAIT1",
        "FIN_WAIT1>FIN_WAIT2",
        "FIN_WAIT2>TIME_WAIT",
    ];

    /// Life 1 closes first, then life 2 recycles its TIME_WAIT and connects.
    fn recycled() -> Vec<&'static str> {
        let mut expected = LIFE.to_vec();
        expected.extend([
            "TIME_WAIT>CLOSED",
            "CLOSED>SYN_SENT",
            "SYN_SENT>ESTABLISHED",
        ]);
        expected
    }

    #[test]
    fn mini_socket_polled_before_its_connection_is_read_is_announced_once() {
        // As seen once in CI: the polls saw the FIN_WAIT2 mini-socket, then its
        // TIME_WAIT, before the reader got to the connection's SYN_SENT.
        let mut k = Correlator::new(0);
        k.on_mini_poll(20 * MS, &[tw(C, S, 5, 59_999)]);
        k.on_mini_poll(30 * MS, &[tw(C, S, 6, 59_995)]);
        client_life(&mut k, 10);
        k.on_mini_poll(40 * MS, &[tw(C, S, 6, 59_985)]);
        let out = k.release(u64::MAX);
        assert_seq(&out, C, &LIFE);
        let tw_at = &out[4].change;
        // The FIN reached the FIN_WAIT2 mini-socket between the polls (timer: at 25 ms).
        assert_eq!(tw_at.source, Source::Sockdiag);
        assert_eq!(tw_at.ts_ns, 25 * MS);
    }

    #[test]
    fn time_wait_recycled_before_its_close_line_is_read() {
        // The poll saw life 1's TIME_WAIT; a new connect() recycled it before the reader
        // read life 1's lines; the mini-socket was gone from the next polls.
        let mut k = Correlator::new(0);
        k.on_mini_poll(20 * MS, &[tw(C, S, 6, 59_994)]);
        for ms in [30, 40, 50, 60] {
            k.on_mini_poll(ms * MS, &[]);
        }
        client_life(&mut k, 10);
        k.on_mini_poll(70 * MS, &[]);
        k.on_trace(set(25, "127.0.0.1:0", S, 7, 2));
        k.on_trace(set(26, C, S, 2, 1));
        let out = k.release(u64::MAX);
        assert_seq(&out, C, &recycled());
        assert_eq!(out[4].change.ts_ns, 14 * MS, "TIME_WAIT at life 1's CLOSE");
        assert!(out[5]
            .change
            .linux
            .as_deref()
            .unwrap()
            .contains("tcp_tw_reuse"));
    }

    #[test]
    fn time_wait_seen_early_then_gone_for_good() {
        // Seen before its CLOSE line, then gone (an RST-less end: its timer): once the
        // line is read, the polls that miss it end it.
        let mut k = Correlator::new(0);
        k.on_mini_poll(20 * MS, &[tw(C, S, 6, 59_994)]);
        k.on_mini_poll(30 * MS, &[]);
        client_life(&mut k, 10);
        for ms in [40, 50, 60] {
            k.on_mini_poll(ms * MS, &[]);
        }
        let out = k.release(u64::MAX);
        let mut expected = LIFE.to_vec();
        expected.push("TIME_WAIT>CLOSED");
        assert_seq(&out, C, &expected);
    }

    #[test]
    fn close_recycled_before_any_poll() {
        // Life 1's CLOSE and life 2's connect() read in one go, no poll between: life
        // 1's TIME_WAIT was recycled unseen (only a TIME_WAIT socket can be).
        let mut k = Correlator::new(0);
        client_life(&mut k, 10);
        k.on_trace(set(25, "127.0.0.1:0", S, 7, 2));
        k.on_trace(set(26, C, S, 2, 1));
        assert!(!k.needs_mini_poll(), "nothing left to ask a poll");
        let out = k.release(u64::MAX);
        assert_seq(&out, C, &recycled());
        assert_eq!(out[4].change.ts_ns, 14 * MS);
        assert_eq!(out[5].change.ts_ns, 25 * MS - 1);
    }

    #[test]
    fn next_lives_fin_does_not_redate_the_earlier_time_wait() {
        // Life 1's FIN_WAIT2 mini-socket turned TIME_WAIT (found by a poll, held to be
        // dated by the local peer's FIN); life 2 recycles the tuple, and its server's
        // LAST_ACK must not redate life 1's TIME_WAIT.
        let mut k = Correlator::new(2 * MS);
        client_life(&mut k, 10);
        k.on_mini_poll(15 * MS, &[tw(C, S, 5, 59_999)]);
        k.on_mini_poll(22 * MS, &[tw(C, S, 6, 59_995)]);
        k.on_trace(set(25, "127.0.0.1:0", S, 7, 2));
        k.on_trace(set(26, C, S, 2, 1));
        k.on_trace(set(30, S, C, 8, 9));
        let out = k.release(u64::MAX);
        let tws: Vec<u64> = out
            .iter()
            .filter(|r| r.change.local == a(C) && r.change.to == TcpState::TimeWait)
            .map(|r| r.change.ts_ns)
            .collect();
        assert_eq!(tws, [17 * MS], "life 1's TIME_WAIT, dated by its timer");
    }
}

mod poll_spans {
    use super::*;

    fn span(start_ms: u64, end_ms: u64) -> PollSpan {
        PollSpan {
            start_ns: start_ms * MS,
            end_ns: end_ms * MS,
        }
    }

    /// The server closes first at 21 ms; the client's ACK of its FIN comes at `acked`
    /// ms, and the full socket hands over to a FIN_WAIT2 mini-socket.
    fn server_closed(acked: u64) -> Correlator {
        let mut k = Correlator::new(2 * MS);
        k.on_trace(set(21, S, C, 1, 4));
        k.on_trace(set(acked, S, C, 4, 5));
        k.on_trace(set(acked, S, C, 5, 7));
        k
    }

    #[test]
    fn time_wait_after_a_fin_wait2_poll_is_never_before_the_close() {
        // As seen in the lab (time-wait-rebind): the poll that showed the FIN_WAIT2
        // mini-socket began (23 ms) before the CLOSE that made it (24 ms), and the
        // TIME_WAIT timer, read in jiffies, dates the peer's FIN a little early (23 ms).
        // TIME_WAIT came after FIN_WAIT2, not before it.
        let mut k = server_closed(24);
        k.on_mini_poll(span(23, 25), &[tw(S, C, 5, 59_999)]);
        k.on_mini_poll(span(27, 29), &[tw(S, C, 6, 59_994)]);
        let out = k.release(u64::MAX);
        assert_seq(
            &out,
            S,
            &[
                "ESTABLISHED>FIN_WAIT1",
                "FIN_WAIT1>FIN_WAIT2",
                "FIN_WAIT2>TIME_WAIT",
            ],
        );
        assert_eq!(out[2].change.ts_ns, 24 * MS, "not before the CLOSE");
    }

    #[test]
    fn time_wait_found_by_a_poll_is_dated_no_later_than_its_end() {
        // The peer's FIN came while the poll walked (timer: 28 ms); the poll began at
        // 27 ms, so only its end bounds that time.
        let mut k = server_closed(22);
        k.on_mini_poll(23 * MS, &[tw(S, C, 5, 59_999)]);
        k.on_mini_poll(span(27, 29), &[tw(S, C, 6, 59_999)]);
        let out = k.release(u64::MAX);
        assert_eq!(out[2].change.to, TcpState::TimeWait);
        assert_eq!(out[2].change.ts_ns, 28 * MS);
    }
}
