//! The state-change event that probes hand to the core.
//!
//! One [`StateChange`] is one transition of one endpoint, already mapped onto the RFC
//! (see [`crate::state`]): probes and `tcplab watch` produce them; the timeline merges
//! them with segments. The type is plain data and serializes to the JSON Lines schema
//! of `tcplab watch --json`.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::state::{self, TcpState};

/// Where a state change was observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A kernel tracepoint (`sock:inet_sock_set_state`): exact, µs timestamp.
    Tracepoint,
    /// netlink sock_diag (what `ss` uses): a snapshot or a poll.
    Sockdiag,
}

/// Which way an RST went, from this endpoint's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RstDirection {
    /// This endpoint sent the RST.
    Sent,
    /// This endpoint received the RST.
    Received,
}

/// An RST that caused (or came with) a transition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reset {
    /// Sent or received by this endpoint.
    pub direction: RstDirection,
    /// The kernel's reason (`NO_SOCKET`, `TCP_ABORT_ON_CLOSE`, ...), from
    /// `tcp:tcp_send_reset`. For a received RST, the reason the peer's kernel gave,
    /// when the peer is on this machine too.
    pub reason: Option<String>,
}

/// One state transition of one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChange {
    /// When, in ns of CLOCK_MONOTONIC (the tracefs `mono` clock). Tracepoint events have
    /// µs resolution; poll-resolution events are only as precise as the poll.
    pub ts_ns: u64,
    /// This endpoint's address.
    pub local: SocketAddr,
    /// The peer's address (`0.0.0.0:0` for a listener).
    pub remote: SocketAddr,
    /// The state before; `None` for a socket that already existed when observation
    /// began (a snapshot line).
    pub from: Option<TcpState>,
    /// The state after.
    pub to: TcpState,
    /// Who saw it.
    pub source: Source,
    /// True when the time is a poll's (the change happened between two polls) or an
    /// estimate, not the instant the kernel made the change.
    pub poll_resolution: bool,
    /// The kernel socket's cookie (`SO_COOKIE`, stable from request socket to
    /// timewait socket), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<u64>,
    /// The RST that came with this change, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rst: Option<Reset>,
    /// Retransmissions (`tcp:tcp_retransmit_skb`) seen in the previous state.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retransmits: u32,
    /// How Linux showed this, when it differs from the RFC picture (e.g. the
    /// tracepoint said `FIN_WAIT2 -> CLOSE` and this is the TIME_WAIT it means).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl StateChange {
    /// The RFC explanation of this change ("rcv FIN / snd ACK"), `"ILLEGAL: ..."` when
    /// the RFC has no such transition, or `"already open"` for a snapshot.
    pub fn explain(&self) -> String {
        match self.from {
            Some(from) => state::explain(from, self.to),
            None => "already in this state when watching began".to_string(),
        }
    }

    /// False only for a transition the RFC does not have.
    pub fn is_legal(&self) -> bool {
        self.from.is_none_or(|from| state::is_legal(from, self.to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change() -> StateChange {
        StateChange {
            ts_ns: 1_500,
            local: "127.0.0.1:40000".parse().unwrap(),
            remote: "[::1]:54321".parse().unwrap(),
            from: Some(TcpState::FinWait2),
            to: TcpState::TimeWait,
            source: Source::Tracepoint,
            poll_resolution: false,
            cookie: Some(7),
            rst: None,
            retransmits: 0,
            linux: Some("FIN_WAIT2 -> CLOSE".into()),
        }
    }

    #[test]
    fn serializes_to_the_json_lines_schema() {
        let json = serde_json::to_value(change()).unwrap();
        assert_eq!(json["ts_ns"], 1500);
        assert_eq!(json["local"], "127.0.0.1:40000");
        assert_eq!(json["remote"], "[::1]:54321");
        assert_eq!(json["from"], "FIN_WAIT2");
        assert_eq!(json["to"], "TIME_WAIT");
        assert_eq!(json["source"], "tracepoint");
        assert!(json.get("rst").is_none());
        let back: StateChange = serde_json::from_value(json).unwrap();
        assert_eq!(back, change());
    }

    #[test]
    fn explains_and_flags_illegal() {
        let mut c = change();
        assert_eq!(c.explain(), "rcv FIN / snd ACK");
        c.from = Some(TcpState::Established);
        assert!(!c.is_legal());
        assert!(c.explain().starts_with("ILLEGAL"));
        c.from = None;
        assert!(c.is_legal());
    }
}
