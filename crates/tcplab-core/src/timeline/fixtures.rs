//! Test fixtures: the classic echo run as segments, kernel events and calls; and a run
//! that ends in a reset after a retransmission.
#![allow(dead_code)]

use std::net::SocketAddr;

use super::flags::{ACK, FIN, PSH, RST, SYN};
use super::{Call, Role, Segment};
use crate::event::{Reset, RstDirection, Source, StateChange};
use crate::state::TcpState::{self, *};

pub const C: &str = "127.0.0.1:40000";
pub const S: &str = "127.0.0.1:54321";

pub fn addr(a: &str) -> SocketAddr {
    a.parse().unwrap()
}

/// A segment from `src` to the other end, at `t` µs.
pub fn seg(t: u64, src: &str, f: u16, seq: u32, ack: u32, len: u32) -> Segment {
    let dst = if src == C { S } else { C };
    Segment {
        ts_ns: t * 1000,
        src: addr(src),
        dst: addr(dst),
        flags: f,
        seq,
        ack,
        window: 512,
        len,
        payload: match len {
            6 => b"hello\n".to_vec(),
            5 => b"quit\n".to_vec(),
            18 => b"You said 'hello'.\n".to_vec(),
            _ => vec![b'x'; len as usize],
        },
        options: Vec::new(),
    }
}

/// The classic echo experiment: handshake, banner, hello, echo, quit, the server
/// closes first, the client's FIN follows its ACK.
pub fn echo_segments() -> Vec<Segment> {
    vec![
        seg(100, C, SYN, 1000, 0, 0),
        seg(110, S, SYN | ACK, 5000, 1001, 0),
        seg(120, C, ACK, 1001, 5001, 0),
        seg(200, S, PSH | ACK, 5001, 1001, 99),
        seg(210, C, ACK, 1001, 5100, 0),
        seg(300, C, PSH | ACK, 1001, 5100, 6),
        seg(310, S, PSH | ACK, 5100, 1007, 18),
        seg(400, C, PSH | ACK, 1007, 5118, 5),
        seg(410, S, FIN | ACK, 5118, 1012, 0),
        seg(420, C, ACK, 1012, 5119, 0),
        seg(430, C, FIN | ACK, 1012, 5119, 0),
        seg(440, S, ACK, 5119, 1013, 0),
    ]
}

pub fn change(t: u64, local: &str, remote: &str, from: TcpState, to: TcpState) -> StateChange {
    StateChange {
        ts_ns: t * 1000,
        local: addr(local),
        remote: addr(remote),
        from: Some(from),
        to,
        source: Source::Tracepoint,
        poll_resolution: false,
        cookie: None,
        rst: None,
        retransmits: 0,
        linux: None,
    }
}

/// What the tracepoint reports for the echo run, with kernel times that sometimes
/// precede the capture time of the very segment that caused them.
pub fn echo_changes() -> Vec<StateChange> {
    let mut tw = change(431, S, C, FinWait2, TimeWait);
    tw.linux = Some("FIN_WAIT2 -> CLOSE".into());
    vec![
        change(95, "127.0.0.1:0", S, Closed, SynSent),
        change(109, C, S, SynSent, Established),
        change(121, S, C, Listen, SynRecv),
        change(121, S, C, SynRecv, Established),
        change(405, S, C, Established, FinWait1),
        change(409, C, S, Established, CloseWait),
        change(421, S, C, FinWait1, FinWait2),
        change(425, C, S, CloseWait, LastAck),
        tw,
        change(441, C, S, LastAck, Closed),
    ]
}

pub fn call(t: u64, role: Role, name: &str) -> Call {
    Call {
        ts_ns: t * 1000,
        role,
        addr: addr(if role == Role::Client { C } else { S }),
        call: name.into(),
    }
}

pub fn echo_calls() -> Vec<Call> {
    vec![
        call(90, Role::Client, "connect()"),
        call(130, Role::Server, "accept()"),
        call(404, Role::Server, "close()"),
        call(424, Role::Client, "close()"),
    ]
}

pub const CLIENT_PATH: [TcpState; 6] = [Closed, SynSent, Established, CloseWait, LastAck, Closed];
pub const SERVER_PATH: [TcpState; 6] = [Listen, SynRecv, Established, FinWait1, FinWait2, TimeWait];

/// The classic example's `\r\n` bug, after a lost segment: the client's `quit\r\n`
/// goes unanswered and is sent again after the retransmission timeout; the server
/// reads up to the `\r`, closes with the `\n` unread, and its kernel answers with an
/// RST instead of a FIN (TCP_ABORT_ON_CLOSE).
pub fn reset_segments() -> Vec<Segment> {
    let quit = |t| {
        let mut s = seg(t, C, PSH | ACK, 1001, 5100, 6);
        s.payload = b"quit\r\n".to_vec();
        s
    };
    vec![
        seg(100, C, SYN, 1000, 0, 0),
        seg(110, S, SYN | ACK, 5000, 1001, 0),
        seg(120, C, ACK, 1001, 5001, 0),
        seg(200, S, PSH | ACK, 5001, 1001, 99),
        seg(210, C, ACK, 1001, 5100, 0),
        quit(300),
        quit(520),
        seg(530, S, ACK, 5100, 1007, 0),
        seg(640, S, RST | ACK, 5100, 1007, 0),
    ]
}

/// What the tracepoints report for [`reset_segments`], RST reasons included.
pub fn reset_changes() -> Vec<StateChange> {
    let mut abort = change(639, S, C, Established, Closed);
    abort.rst = Some(Reset {
        direction: RstDirection::Sent,
        reason: Some("TCP_ABORT_ON_CLOSE".into()),
    });
    let mut reset = change(641, C, S, Established, Closed);
    reset.rst = Some(Reset {
        direction: RstDirection::Received,
        reason: Some("TCP_ABORT_ON_CLOSE".into()),
    });
    vec![
        change(95, "127.0.0.1:0", S, Closed, SynSent),
        change(109, C, S, SynSent, Established),
        change(121, S, C, Listen, SynRecv),
        change(121, S, C, SynRecv, Established),
        abort,
        reset,
    ]
}

/// The calls of [`reset_segments`], the server's setup included (the long texts that
/// must spill from the server's column into the lane).
pub fn reset_calls() -> Vec<Call> {
    vec![
        call(10, Role::Server, "socket()"),
        call(11, Role::Server, "setsockopt(SO_REUSEADDR)"),
        call(12, Role::Server, "bind(127.0.0.1:54321)"),
        call(13, Role::Server, "listen(5)"),
        call(90, Role::Client, "connect()"),
        call(130, Role::Server, "accept()"),
        call(190, Role::Server, "write(99)"),
        call(290, Role::Client, "write(6)"),
        call(635, Role::Server, "read() = 5"),
        call(637, Role::Server, "close()"),
        call(650, Role::Client, "read() = error ECONNRESET"),
    ]
}
