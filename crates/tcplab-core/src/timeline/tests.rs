use super::flags::{ACK, FIN, PSH, RST, SYN};
use super::*;
use crate::event::{Reset, RstDirection};
use crate::state::TcpState::*;

use super::fixtures::*;

/// Index of the `n`th segment entry.
#[track_caller]
fn segment_index(conn: &Connection, n: usize) -> usize {
    conn.entries
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e.item, Item::Segment(_)))
        .nth(n)
        .map(|(i, _)| i)
        .expect("segment")
}

/// The entry of `role`'s change to `to`.
#[track_caller]
fn state_entry(conn: &Connection, role: Role, to: TcpState) -> (usize, &StateEntry) {
    conn.entries
        .iter()
        .enumerate()
        .find_map(|(i, e)| match &e.item {
            Item::State(s) if s.role == role && s.to == to => Some((i, s)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {role:?} change to {to}"))
}

#[test]
fn inference_gives_the_textbook_paths_for_the_echo_run() {
    let conns = infer(&echo_segments());
    assert_eq!(conns.len(), 1);
    let conn = &conns[0];
    assert_eq!(conn.client, addr(C));
    assert_eq!(conn.path(Role::Client), CLIENT_PATH);
    assert_eq!(conn.path(Role::Server), SERVER_PATH);
    assert!(conn.entries.iter().all(|e| match &e.item {
        Item::State(s) => s.inferred,
        _ => true,
    }));
    assert_eq!(
        conn.flag_pattern(),
        ["S", "S.", ".", "P.", ".", "P.", "P.", "P.", "F.", ".", "F.", "."]
    );
}

#[test]
fn inferred_changes_sit_next_to_their_segment() {
    let conn = &infer(&echo_segments())[0];
    let syn = segment_index(conn, 0);
    let (i, s) = state_entry(conn, Role::Client, SynSent);
    assert_eq!(i + 1, syn, "SYN_SENT right before the SYN");
    assert!(matches!(s.cause, Cause::Sent { segment, .. } if segment == syn));
    let (i, s) = state_entry(conn, Role::Server, SynRecv);
    assert!(i > syn);
    assert_eq!(s.cause.explain(), "rcv SYN / snd SYN,ACK");
}

#[test]
fn relative_numbers_follow_wiresharks_rules() {
    let conn = &infer(&echo_segments())[0];
    let rel: Vec<(u32, u32)> = conn
        .entries
        .iter()
        .filter_map(|e| match &e.item {
            Item::Segment(s) => Some((s.rel_seq, s.rel_ack)),
            _ => None,
        })
        .collect();
    assert_eq!(&rel[..4], &[(0, 0), (0, 1), (1, 1), (1, 1)]);
    assert_eq!(rel[8], (118, 12), "server FIN");
    assert_eq!(rel[11], (119, 13), "last ACK");
}

#[test]
fn kernel_changes_are_placed_after_the_segment_that_caused_them() {
    let conns = build(&echo_segments(), &echo_changes(), &echo_calls());
    let conn = &conns[0];
    assert_eq!(conn.path(Role::Client), CLIENT_PATH);
    assert_eq!(conn.path(Role::Server), SERVER_PATH);

    // The kernel stamped ESTABLISHED 1 µs before the capture saw the SYN,ACK.
    let synack = segment_index(conn, 1);
    let (i, s) = state_entry(conn, Role::Client, Established);
    assert_eq!(i, synack + 1);
    assert_eq!(
        s.cause,
        Cause::Received {
            segment: synack,
            explain: "rcv SYN,ACK / snd ACK".into()
        }
    );

    // LISTEN -> SYN_RECV is reported at the final ACK but caused by the SYN.
    let (i, s) = state_entry(conn, Role::Server, SynRecv);
    let syn = segment_index(conn, 0);
    assert!(i > syn && i < synack, "SYN_RECV between SYN and SYN,ACK");
    assert!(s.linux.is_some());

    // The server's close() comes before its FIN_WAIT1, which comes before its FIN.
    let fin = segment_index(conn, 8);
    let (i, s) = state_entry(conn, Role::Server, FinWait1);
    assert_eq!(i + 1, fin);
    let Cause::Sent {
        segment,
        call: Some(call),
        ..
    } = s.cause
    else {
        panic!("FIN_WAIT1 caused by a sent FIN and a call: {:?}", s.cause);
    };
    assert_eq!(segment, fin);
    assert!(call < i);
    assert!(
        matches!(&conn.entries[call].item, Item::Call(c) if c.call == "close()" && c.role == Role::Server)
    );

    // Stamped before the FIN's capture, still placed after it.
    let (i, s) = state_entry(conn, Role::Client, CloseWait);
    assert_eq!(i, fin + 1);
    assert_eq!(s.cause.explain(), "rcv FIN / snd ACK");

    // The final ACK acknowledges the client's FIN.
    let last = segment_index(conn, 11);
    let (i, s) = state_entry(conn, Role::Client, Closed);
    assert_eq!(i, last + 1);
    assert_eq!(s.cause.explain(), "rcv ACK of FIN");

    // The TIME_WAIT Linux shows as FIN_WAIT2 -> CLOSE keeps that note.
    let (_, s) = state_entry(conn, Role::Server, TimeWait);
    assert_eq!(s.linux.as_deref(), Some("FIN_WAIT2 -> CLOSE"));
    assert!(!s.inferred);
}

#[test]
fn accept_comes_after_the_third_ack() {
    let conn = &build(&echo_segments(), &echo_changes(), &echo_calls())[0];
    let ack = segment_index(conn, 2);
    let accept = conn
        .entries
        .iter()
        .position(|e| matches!(&e.item, Item::Call(c) if c.call == "accept()"))
        .unwrap();
    assert!(accept > ack);
}

#[test]
fn refused_connect_closes_the_client_on_rst() {
    let segs = vec![
        seg(100, C, SYN, 1000, 0, 0),
        seg(110, S, RST | ACK, 0, 1001, 0),
    ];
    let conn = &infer(&segs)[0];
    assert_eq!(conn.path(Role::Client), [Closed, SynSent, Closed]);
    assert!(conn.path(Role::Server).is_empty(), "no listener, no states");

    let mut refused = change(111, C, S, SynSent, Closed);
    refused.rst = Some(Reset {
        direction: RstDirection::Received,
        reason: None,
    });
    let conn = &build(&segs, &[refused], &[])[0];
    let (i, s) = state_entry(conn, Role::Client, Closed);
    assert_eq!(i, 2);
    assert_eq!(s.cause.explain(), "rcv RST");
}

#[test]
fn a_capture_that_starts_mid_connection_begins_established() {
    let segs = echo_segments()[5..].to_vec();
    let conn = &infer(&segs)[0];
    assert_eq!(
        conn.path(Role::Client),
        [Established, CloseWait, LastAck, Closed]
    );
    assert_eq!(
        conn.path(Role::Server),
        [Established, FinWait1, FinWait2, TimeWait]
    );
}

#[test]
fn simultaneous_close_goes_through_closing_on_both_sides() {
    let segs = vec![
        seg(100, C, SYN, 1000, 0, 0),
        seg(110, S, SYN | ACK, 5000, 1001, 0),
        seg(120, C, ACK, 1001, 5001, 0),
        seg(200, C, FIN | ACK, 1001, 5001, 0),
        seg(201, S, FIN | ACK, 5001, 1001, 0),
        seg(210, C, ACK, 1002, 5002, 0),
        seg(211, S, ACK, 5002, 1002, 0),
    ];
    let conn = &infer(&segs)[0];
    let closing = [Established, FinWait1, Closing, TimeWait];
    assert!(conn.path(Role::Client).ends_with(&closing));
    assert!(
        conn.path(Role::Server).ends_with(&closing),
        "{:?}",
        conn.path(Role::Server)
    );
}

#[test]
fn a_reused_port_after_the_end_is_a_new_connection() {
    let mut segs = echo_segments();
    segs.push(seg(900, C, SYN, 7000, 0, 0));
    segs.push(seg(910, S, RST | ACK, 0, 7001, 0));
    assert_eq!(infer(&segs).len(), 2);
}

#[test]
fn retransmissions_are_marked() {
    let mut segs = echo_segments();
    segs.insert(7, seg(305, C, PSH | ACK, 1001, 5100, 6));
    let conn = &infer(&segs)[0];
    let marked: Vec<bool> = conn
        .entries
        .iter()
        .filter_map(|e| match &e.item {
            Item::Segment(s) => Some(s.retransmission),
            _ => None,
        })
        .collect();
    assert_eq!(marked.iter().filter(|&&m| m).count(), 1);
    assert!(
        marked[6],
        "the copy of 'hello' (sorted by time: 7th segment)"
    );
}

#[test]
fn the_timeline_round_trips_through_json() {
    let conns = build(&echo_segments(), &echo_changes(), &echo_calls());
    let json = serde_json::to_string(&conns).unwrap();
    let back: Vec<Connection> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, conns);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value[0]["entries"][0]["type"], "call");
}

#[test]
fn segment_comments_name_the_changes_each_segment_caused() {
    let conn = &build(&echo_segments(), &echo_changes(), &echo_calls())[0];
    let comments = conn.segment_comments();
    let fin = echo_segments()[8].clone();
    let (_, text) = comments
        .iter()
        .find(|(key, _)| *key == (fin.ts_ns, fin.seq, fin.flags))
        .expect("the server's FIN has a comment");
    assert_eq!(
        text,
        "server ESTABLISHED → FIN_WAIT1 (CLOSE / snd FIN); client ESTABLISHED → CLOSE_WAIT (rcv FIN / snd ACK)"
    );
}

#[test]
fn without_kernel_events_the_states_are_inferred_and_tied_to_the_calls() {
    let conn = build_connection(
        addr(C),
        addr(S),
        &echo_segments(),
        States::Inferred,
        &echo_calls(),
    );
    assert_eq!(conn.path(Role::Client), CLIENT_PATH);
    assert_eq!(conn.path(Role::Server), SERVER_PATH);
    let (_, fw1) = state_entry(&conn, Role::Server, FinWait1);
    assert!(fw1.inferred);
    let Cause::Sent {
        call: Some(call), ..
    } = fw1.cause
    else {
        panic!(
            "FIN_WAIT1 caused by sending the FIN after close(): {:?}",
            fw1.cause
        );
    };
    assert!(matches!(&conn.entries[call].item, Item::Call(c) if c.call == "close()"));
    let (_, syn_sent) = state_entry(&conn, Role::Client, SynSent);
    assert!(matches!(syn_sent.cause, Cause::Sent { call: Some(c), .. }
            if matches!(&conn.entries[c].item, Item::Call(c) if c.call == "connect()")));
    // The calls are on the timeline too, and only the inferred states.
    assert_eq!(
        conn.entries
            .iter()
            .filter(|e| matches!(e.item, Item::Call(_)))
            .count(),
        4
    );
    assert!(conn.entries.iter().all(|e| match &e.item {
        Item::State(s) => s.inferred,
        _ => true,
    }));
}

#[test]
fn an_inferred_reset_says_which_side_sent_it() {
    let segs = vec![
        seg(100, C, SYN, 1000, 0, 0),
        seg(110, S, SYN | ACK, 5000, 1001, 0),
        seg(120, C, ACK, 1001, 5001, 0),
        seg(200, C, RST | ACK, 1001, 5001, 0),
    ];
    let conn = &infer(&segs)[0];
    let (_, client) = state_entry(conn, Role::Client, Closed);
    assert_eq!(client.cause.explain(), "ABORT / snd RST");
    let (_, server) = state_entry(conn, Role::Server, Closed);
    assert_eq!(server.cause.explain(), "rcv RST");
    let refused = vec![
        seg(100, C, SYN, 1000, 0, 0),
        seg(110, S, RST | ACK, 0, 1001, 0),
    ];
    let conn = &infer(&refused)[0];
    let (_, client) = state_entry(conn, Role::Client, Closed);
    assert_eq!(client.cause.explain(), "rcv RST (refused)");
}

#[test]
fn the_end_of_time_wait_is_the_2msl_timer() {
    let mut changes = echo_changes();
    let mut end = change(60_000_431, S, C, TimeWait, Closed);
    end.poll_resolution = true;
    changes.push(end);
    let conn = &build(&echo_segments(), &changes, &echo_calls())[0];
    let mut path = SERVER_PATH.to_vec();
    path.push(Closed);
    assert_eq!(conn.path(Role::Server), path);
    let (i, s) = state_entry(conn, Role::Server, Closed);
    assert_eq!(i, conn.entries.len() - 1, "the last entry, a minute later");
    assert!(matches!(&s.cause, Cause::Timer { explain } if explain.starts_with("2MSL timeout")));
}

#[test]
fn polls_that_skip_states_or_miss_an_rst_do_not_guess_a_cause() {
    // A poll saw CLOSE_WAIT, the next one nothing: LAST_ACK came and went between them,
    // or an RST closed it; polls cannot tell.
    let mut gone = change(500, C, S, CloseWait, Closed);
    gone.poll_resolution = true;
    // Two polls apart: ESTABLISHED, then TIME_WAIT (FIN_WAIT1 and 2 unseen), which the
    // RFC has no single transition for.
    let mut skipped = change(500, S, C, Established, TimeWait);
    skipped.poll_resolution = true;
    let conn = &build_connection(addr(C), addr(S), &[], States::Kernel(&[gone, skipped]), &[]);
    let (_, c) = state_entry(conn, Role::Client, Closed);
    assert!(matches!(&c.cause, Cause::Unknown { explain } if explain.contains("sock_diag polls")));
    let (_, s) = state_entry(conn, Role::Server, TimeWait);
    assert!(
        matches!(&s.cause, Cause::Unknown { explain } if explain.contains("states between")),
        "{:?}",
        s.cause
    );
}

#[test]
fn a_change_nothing_explains_is_unknown_not_a_timer() {
    // CLOSE_WAIT back to ESTABLISHED: no RFC transition, no segment, no call.
    let odd = change(500, C, S, CloseWait, Established);
    let conn = &build_connection(addr(C), addr(S), &[], States::Kernel(&[odd]), &[]);
    let (_, c) = state_entry(conn, Role::Client, Established);
    assert!(matches!(&c.cause, Cause::Unknown { .. }), "{:?}", c.cause);
}
