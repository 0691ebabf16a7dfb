//! TCP connection states and the transitions between them.
//!
//! Have RFC 9293 open at §3.3.2 (the state diagram, Figure 5) while reading this module.
//! [`TcpState`] carries the RFC's states; [`transition`] is the ONE table of legal
//! transitions, each explained by the segment or call that causes it. Linux does not
//! report every transition the way the RFC draws it; [`linux_close`] and
//! [`LINUX_CHILD_SYN_RECV`] map its way of showing things back onto the RFC.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A TCP connection state, as named by RFC 9293 §3.3.2.
///
/// Serialized (and [`Display`](fmt::Display)ed) with the short names that `ss`, the
/// kernel and our JSON Lines use: `CLOSED`, `SYN_RECV`, `FIN_WAIT1`, ...
/// [`TcpState::rfc_name`] gives the RFC's spelling (`SYN-RECEIVED`, `FIN-WAIT-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TcpState {
    /// No connection (the RFC's fictional state; Linux's `TCP_CLOSE`).
    #[serde(rename = "CLOSED")]
    Closed,
    /// Waiting for a connection request (a listening socket).
    #[serde(rename = "LISTEN")]
    Listen,
    /// SYN sent, waiting for the peer's SYN.
    #[serde(rename = "SYN_SENT")]
    SynSent,
    /// SYN received and SYN,ACK sent, waiting for the ACK of our SYN.
    #[serde(rename = "SYN_RECV")]
    SynRecv,
    /// Open: data flows both ways.
    #[serde(rename = "ESTABLISHED")]
    Established,
    /// We closed and sent FIN; waiting for its ACK or the peer's FIN.
    #[serde(rename = "FIN_WAIT1")]
    FinWait1,
    /// Our FIN is acknowledged; waiting for the peer's FIN.
    #[serde(rename = "FIN_WAIT2")]
    FinWait2,
    /// The peer closed (its FIN arrived); waiting for our application to close.
    #[serde(rename = "CLOSE_WAIT")]
    CloseWait,
    /// Both sides sent FIN at once; waiting for the ACK of ours.
    #[serde(rename = "CLOSING")]
    Closing,
    /// We closed after the peer; waiting for the ACK of our FIN.
    #[serde(rename = "LAST_ACK")]
    LastAck,
    /// Waiting 2×MSL (60 s on Linux) so late segments die before the tuple is reused.
    #[serde(rename = "TIME_WAIT")]
    TimeWait,
}

/// Every state, in the RFC's order.
pub const ALL_STATES: [TcpState; 11] = [
    TcpState::Closed,
    TcpState::Listen,
    TcpState::SynSent,
    TcpState::SynRecv,
    TcpState::Established,
    TcpState::FinWait1,
    TcpState::FinWait2,
    TcpState::CloseWait,
    TcpState::Closing,
    TcpState::LastAck,
    TcpState::TimeWait,
];

impl TcpState {
    /// The short name (`FIN_WAIT1`), as in JSON and `ss`.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::Closed => "CLOSED",
            TcpState::Listen => "LISTEN",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait1 => "FIN_WAIT1",
            TcpState::FinWait2 => "FIN_WAIT2",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::Closing => "CLOSING",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
        }
    }

    /// The name as RFC 9293 spells it (`FIN-WAIT-1`).
    pub fn rfc_name(self) -> &'static str {
        match self {
            TcpState::Closed => "CLOSED",
            TcpState::Listen => "LISTEN",
            TcpState::SynSent => "SYN-SENT",
            TcpState::SynRecv => "SYN-RECEIVED",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait1 => "FIN-WAIT-1",
            TcpState::FinWait2 => "FIN-WAIT-2",
            TcpState::CloseWait => "CLOSE-WAIT",
            TcpState::Closing => "CLOSING",
            TcpState::LastAck => "LAST-ACK",
            TcpState::TimeWait => "TIME-WAIT",
        }
    }

    /// The state for a Linux `TCP_*` number (include/net/tcp_states.h), as the
    /// tracepoints and sock_diag report it. `TCP_NEW_SYN_RECV` (12, a request socket)
    /// is SYN_RECV. `None` for numbers Linux does not define.
    pub fn from_linux(n: u32) -> Option<TcpState> {
        Some(match n {
            1 => TcpState::Established,
            2 => TcpState::SynSent,
            3 | 12 => TcpState::SynRecv,
            4 => TcpState::FinWait1,
            5 => TcpState::FinWait2,
            6 => TcpState::TimeWait,
            7 => TcpState::Closed,
            8 => TcpState::CloseWait,
            9 => TcpState::LastAck,
            10 => TcpState::Listen,
            11 => TcpState::Closing,
            _ => return None,
        })
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A name that is no TCP state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown TCP state {0:?} (expected one of CLOSED, LISTEN, SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, CLOSING, LAST_ACK, TIME_WAIT)")]
pub struct UnknownState(pub String);

impl FromStr for TcpState {
    type Err = UnknownState;

    /// Accepts the short names, the RFC names and Linux's (`TCP_CLOSE`,
    /// `SYN-RECEIVED`, `fin-wait-1`, `time_wait`), case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm: String = s
            .trim()
            .trim_start_matches("TCP_")
            .trim_start_matches("tcp_")
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        Ok(match norm.as_str() {
            "CLOSED" | "CLOSE" => TcpState::Closed,
            "LISTEN" => TcpState::Listen,
            "SYNSENT" => TcpState::SynSent,
            "SYNRECV" | "SYNRECEIVED" | "NEWSYNRECV" => TcpState::SynRecv,
            "ESTABLISHED" | "ESTAB" => TcpState::Established,
            "FINWAIT1" => TcpState::FinWait1,
            "FINWAIT2" => TcpState::FinWait2,
            "CLOSEWAIT" => TcpState::CloseWait,
            "CLOSING" => TcpState::Closing,
            "LASTACK" => TcpState::LastAck,
            "TIMEWAIT" => TcpState::TimeWait,
            _ => return Err(UnknownState(s.to_string())),
        })
    }
}

/// What caused a legal transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The event and the action, in the RFC diagram's notation: `"rcv FIN / snd ACK"`.
    pub cause: &'static str,
}

/// The RFC 9293 transition table (§3.3.2 and the event processing of §3.10), plus the
/// aborts (RST, user ABORT, timeouts) that the diagram leaves implicit. `None` means
/// the transition is illegal: no segment or call can cause it.
///
/// This is the ONE place that knows which transitions exist.
pub fn transition(from: TcpState, to: TcpState) -> Option<Transition> {
    use TcpState::*;
    let cause = match (from, to) {
        // listen() on a fresh socket.
        (Closed, Listen) => "passive OPEN (listen)",
        // connect(): the SYN leaves immediately.
        (Closed, SynSent) => "active OPEN (connect) / snd SYN",
        // A SYN arrives at a listener: a new connection answers SYN,ACK.
        (Listen, SynRecv) => "rcv SYN / snd SYN,ACK",
        // RFC only: a SEND on a listening socket turns it active. Linux never does it.
        (Listen, SynSent) => "SEND / snd SYN",
        // close() of a listener.
        (Listen, Closed) => "CLOSE (close listener)",
        // Simultaneous open: the peer's SYN crosses ours.
        (SynSent, SynRecv) => "rcv SYN / snd SYN,ACK (simultaneous open)",
        // The normal client handshake.
        (SynSent, Established) => "rcv SYN,ACK / snd ACK",
        // RST answering our SYN (refused), SYN retries exhausted, or close().
        (SynSent, Closed) => "rcv RST (refused), SYN timeout, or CLOSE",
        // The third segment of the handshake.
        (SynRecv, Established) => "rcv ACK of SYN",
        // close() before the handshake completes.
        (SynRecv, FinWait1) => "CLOSE / snd FIN",
        // RST in a passively opened connection returns it to LISTEN (RFC §3.10.7.4).
        (SynRecv, Listen) => "rcv RST (back to LISTEN)",
        // RST, or SYN,ACK retries exhausted.
        (SynRecv, Closed) => "rcv RST, or SYN,ACK timeout",
        // The active close.
        (Established, FinWait1) => "CLOSE / snd FIN",
        // The passive close begins: the peer's FIN.
        (Established, CloseWait) => "rcv FIN / snd ACK",
        // Abortive close either way, or a fatal timeout (retransmissions, keepalive).
        (Established, Closed) => "rcv RST, or ABORT / snd RST, or timeout",
        // Our FIN is acknowledged.
        (FinWait1, FinWait2) => "rcv ACK of FIN",
        // Simultaneous close: the peer's FIN arrives before the ACK of ours.
        (FinWait1, Closing) => "rcv FIN / snd ACK (simultaneous close)",
        // The peer's FIN and the ACK of ours in one segment.
        (FinWait1, TimeWait) => "rcv FIN,ACK / snd ACK",
        (FinWait1, Closed) => "rcv RST, or ABORT, or timeout",
        // The passive closer's FIN.
        (FinWait2, TimeWait) => "rcv FIN / snd ACK",
        // RST, or Linux's FIN_WAIT2 timeout (tcp_fin_timeout) for an orphaned socket.
        (FinWait2, Closed) => "rcv RST, or FIN_WAIT2 timeout",
        // The application closes after the peer did.
        (CloseWait, LastAck) => "CLOSE / snd FIN",
        (CloseWait, Closed) => "rcv RST, or ABORT / snd RST",
        // The ACK of our FIN in a simultaneous close.
        (Closing, TimeWait) => "rcv ACK of FIN",
        (Closing, Closed) => "rcv RST, or timeout",
        // The ACK of our FIN ends the passive close.
        (LastAck, Closed) => "rcv ACK of FIN",
        // 2×MSL elapsed (Linux: TCP_TIMEWAIT_LEN, 60 s), or an RST (TIME-WAIT
        // assassination, RFC 1337).
        (TimeWait, Closed) => "2MSL timeout",
        _ => return None,
    };
    Some(Transition { cause })
}

/// True when `from → to` is in the table of [`transition`].
pub fn is_legal(from: TcpState, to: TcpState) -> bool {
    transition(from, to).is_some()
}

/// Explains `from → to`: the cause for a legal transition, or a statement that it is
/// illegal, never hidden.
pub fn explain(from: TcpState, to: TcpState) -> String {
    match transition(from, to) {
        Some(t) => t.cause.to_string(),
        None => format!(
            "ILLEGAL: RFC 9293 has no transition {} -> {}",
            from.rfc_name(),
            to.rfc_name()
        ),
    }
}

/// How a full socket's `X → CLOSE` (as the tracepoint reports it) maps onto the RFC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinuxClose {
    /// A plain close: the RFC transition `X → CLOSED` happened.
    Closed,
    /// Linux handed the connection to a timewait mini-socket, which the tracepoint
    /// never reports. It is in TIME_WAIT, or (after `FIN_WAIT2` of an orphaned socket)
    /// still in FIN_WAIT2; only sock_diag can tell which.
    HandedToTimewait,
}

/// Maps a full socket's `from → CLOSE` from `sock:inet_sock_set_state`. `reset` says
/// whether an RST was sent or received for this socket just then. `FIN_WAIT1`,
/// `FIN_WAIT2` and `CLOSING` going to CLOSE without an RST mean the kernel replaced the
/// socket by a timewait mini-socket (`tcp_time_wait()` then `tcp_done()`).
pub fn linux_close(from: TcpState, reset: bool) -> LinuxClose {
    match from {
        TcpState::FinWait1 | TcpState::FinWait2 | TcpState::Closing if !reset => {
            LinuxClose::HandedToTimewait
        }
        _ => LinuxClose::Closed,
    }
}

/// Why an accepted child's `LISTEN → SYN_RECV` arrives late: Linux creates the full
/// socket only when the handshake's final ACK arrives and then fires `LISTEN → SYN_RECV`
/// and `SYN_RECV → ESTABLISHED` together. Until then the connection is a request socket
/// that only sock_diag shows.
pub const LINUX_CHILD_SYN_RECV: &str =
    "Linux reports it when the final ACK arrives; the request socket existed since the SYN";

#[cfg(test)]
mod tests {
    use super::TcpState::*;
    use super::*;

    #[track_caller]
    fn legal(from: TcpState, to: TcpState, cause_contains: &str) {
        let t = transition(from, to).unwrap_or_else(|| panic!("{from} -> {to} should be legal"));
        assert!(
            t.cause.contains(cause_contains),
            "{from} -> {to}: cause {:?} lacks {cause_contains:?}",
            t.cause
        );
    }

    #[track_caller]
    fn illegal(from: TcpState, to: TcpState) {
        assert!(!is_legal(from, to), "{from} -> {to} should be illegal");
        assert!(explain(from, to).starts_with("ILLEGAL"));
    }

    mod closed {
        use super::*;
        #[test]
        fn opens_passively_or_actively() {
            legal(Closed, Listen, "listen");
            legal(Closed, SynSent, "snd SYN");
        }
        #[test]
        fn cannot_jump_to_established() {
            illegal(Closed, Established);
            illegal(Closed, TimeWait);
        }
    }

    mod listen {
        use super::*;
        #[test]
        fn syn_arrives() {
            legal(Listen, SynRecv, "rcv SYN / snd SYN,ACK");
            legal(Listen, Closed, "CLOSE");
        }
        #[test]
        fn no_handshake_skipping() {
            illegal(Listen, Established);
        }
    }

    mod syn_sent {
        use super::*;
        #[test]
        fn handshake_refusal_and_simultaneous_open() {
            legal(SynSent, Established, "rcv SYN,ACK / snd ACK");
            legal(SynSent, Closed, "refused");
            legal(SynSent, SynRecv, "simultaneous open");
        }
        #[test]
        fn cannot_close_before_open() {
            illegal(SynSent, FinWait1);
        }
    }

    mod syn_recv {
        use super::*;
        #[test]
        fn third_ack_or_reset() {
            legal(SynRecv, Established, "rcv ACK of SYN");
            legal(SynRecv, FinWait1, "snd FIN");
            legal(SynRecv, Closed, "rcv RST");
            legal(SynRecv, Listen, "rcv RST");
        }
    }

    mod established {
        use super::*;
        #[test]
        fn active_passive_and_abortive_close() {
            legal(Established, FinWait1, "CLOSE / snd FIN");
            legal(Established, CloseWait, "rcv FIN / snd ACK");
            legal(Established, Closed, "RST");
        }
        #[test]
        fn no_shortcut_to_time_wait() {
            illegal(Established, TimeWait);
            illegal(Established, LastAck);
            illegal(Established, SynSent);
        }
    }

    mod fin_wait {
        use super::*;
        #[test]
        fn fin_wait1() {
            legal(FinWait1, FinWait2, "rcv ACK of FIN");
            legal(FinWait1, Closing, "rcv FIN");
            legal(FinWait1, TimeWait, "rcv FIN,ACK");
        }
        #[test]
        fn fin_wait2() {
            legal(FinWait2, TimeWait, "rcv FIN / snd ACK");
            legal(FinWait2, Closed, "FIN_WAIT2 timeout");
            illegal(FinWait2, CloseWait);
        }
    }

    mod passive_close {
        use super::*;
        #[test]
        fn close_wait_then_last_ack() {
            legal(CloseWait, LastAck, "CLOSE / snd FIN");
            legal(LastAck, Closed, "rcv ACK of FIN");
            illegal(CloseWait, TimeWait);
            illegal(LastAck, TimeWait);
        }
    }

    mod closing_and_time_wait {
        use super::*;
        #[test]
        fn closing_then_time_wait_then_closed() {
            legal(Closing, TimeWait, "rcv ACK of FIN");
            legal(TimeWait, Closed, "2MSL");
            illegal(TimeWait, Established);
        }
    }

    mod linux_mapping {
        use super::*;
        #[test]
        fn fin_wait2_close_without_reset_is_timewait() {
            assert_eq!(linux_close(FinWait2, false), LinuxClose::HandedToTimewait);
            assert_eq!(linux_close(Closing, false), LinuxClose::HandedToTimewait);
            assert_eq!(linux_close(FinWait1, false), LinuxClose::HandedToTimewait);
        }
        #[test]
        fn reset_or_other_states_are_plain_close() {
            assert_eq!(linux_close(FinWait2, true), LinuxClose::Closed);
            assert_eq!(linux_close(LastAck, false), LinuxClose::Closed);
            assert_eq!(linux_close(Established, false), LinuxClose::Closed);
        }
        #[test]
        fn linux_numbers() {
            assert_eq!(TcpState::from_linux(7), Some(Closed));
            assert_eq!(TcpState::from_linux(12), Some(SynRecv));
            assert_eq!(TcpState::from_linux(0), None);
            assert_eq!(TcpState::from_linux(13), None);
        }
    }

    mod names {
        use super::*;
        #[test]
        fn round_trip_all_spellings() {
            for s in ALL_STATES {
                assert_eq!(s.name().parse::<TcpState>(), Ok(s));
                assert_eq!(s.rfc_name().parse::<TcpState>(), Ok(s));
                let json = serde_json::to_string(&s).unwrap();
                assert_eq!(json, format!("\"{}\"", s.name()));
                assert_eq!(serde_json::from_str::<TcpState>(&json).unwrap(), s);
            }
            assert_eq!("TCP_CLOSE".parse::<TcpState>(), Ok(Closed));
            assert_eq!("fin-wait-1".parse::<TcpState>(), Ok(FinWait1));
            assert!("FOO".parse::<TcpState>().is_err());
        }
    }
}
