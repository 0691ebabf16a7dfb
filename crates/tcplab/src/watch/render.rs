//! The lines `tcplab watch` prints: human and JSON Lines. Pure functions of the data.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};
use tcplab_core::event::{RstDirection, Source, StateChange};
use tcplab_core::state::TcpState;

use super::correlate::Released;
use crate::probe::sockdiag::Owner;

/// `HH:MM:SS.uuuuuu` (UTC) of a wall-clock time in ns since the epoch.
pub fn clock(wall_ns: u64) -> String {
    let secs = wall_ns / 1_000_000_000;
    let us = (wall_ns % 1_000_000_000) / 1_000;
    let day = secs % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{us:06}",
        day / 3600,
        day / 60 % 60,
        day % 60
    )
}

/// A duration, short: `850us`, `12.3ms`, `4.02s`.
pub fn duration(ns: u64) -> String {
    if ns < 1_000_000 {
        format!("{}us", ns / 1_000)
    } else if ns < 1_000_000_000 {
        format!("{:.1}ms", ns as f64 / 1e6)
    } else {
        format!("{:.2}s", ns as f64 / 1e9)
    }
}

/// The cause: the RFC explanation, the RST, retransmissions.
pub fn cause(c: &StateChange) -> String {
    let mut s = if c.from.is_some() && !c.is_legal() && c.poll_resolution {
        // A poll sees the state before and after; what lay between is unknown, not illegal.
        "changed between two polls (states in between missed)".to_string()
    } else if c.from.is_some() && c.source == Source::Sockdiag && c.linux.is_none() {
        format!("{} (between two polls)", c.explain())
    } else {
        c.explain()
    };
    if let Some(rst) = &c.rst {
        let dir = match rst.direction {
            RstDirection::Sent => "snd RST",
            RstDirection::Received => "rcv RST",
        };
        let _ = match &rst.reason {
            Some(r) if rst.direction == RstDirection::Received => {
                write!(s, " [{dir}, peer's reason {r}]")
            }
            Some(r) => write!(s, " [{dir} {r}]"),
            None => write!(s, " [{dir}]"),
        };
    }
    if c.retransmits > 0 {
        let _ = write!(s, " [{} retransmits before]", c.retransmits);
    }
    s
}

/// One human line.
pub fn human(r: &Released, wall_offset_ns: i128, owner: Option<&Owner>) -> String {
    let c = &r.change;
    let wall = (i128::from(c.ts_ns) + wall_offset_ns).max(0) as u64;
    let mark = if c.poll_resolution { '~' } else { ' ' };
    let from = c
        .from
        .map_or_else(|| "(exists)".to_string(), |f| f.to_string());
    let mut line = format!(
        "{mark}{}  {} -> {}  {from:>11} -> {:<11}  {}",
        clock(wall),
        c.local,
        c.remote,
        c.to,
        cause(c)
    );
    if let Some(l) = &c.linux {
        let _ = write!(line, " ({l})");
    }
    if let (Some(ns), Some(from)) = (r.in_prev_ns, c.from) {
        let _ = write!(line, "  ({} in {from})", duration(ns));
    }
    if let Some(o) = owner {
        let _ = write!(line, "  pid {} ({})", o.pid, o.comm);
    }
    line
}

/// One JSON Lines record. Stable fields: `ts_ns`, `local`, `remote`, `from`, `to`,
/// `source`, `poll_resolution`; plus `kind`, `cause`, `legal`, `in_prev_ns`, `pid`,
/// `comm`, `cookie`, `rst`, `retransmits`, `linux` where known.
pub fn json(r: &Released, owner: Option<&Owner>) -> String {
    let c = &r.change;
    let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("kind".into(), json!("transition"));
        m.insert("cause".into(), json!(cause(c)));
        m.insert("legal".into(), json!(c.is_legal()));
        if let Some(ns) = r.in_prev_ns {
            m.insert("in_prev_ns".into(), json!(ns));
        }
        if let Some(o) = owner {
            m.insert("pid".into(), json!(o.pid));
            m.insert("comm".into(), json!(o.comm));
        }
    }
    v.to_string()
}

/// A socket stuck too long in CLOSE_WAIT, FIN_WAIT2 or SYN_RECV.
#[derive(Debug, Clone)]
pub struct Stuck {
    /// Local address.
    pub local: std::net::SocketAddr,
    /// Remote address.
    pub remote: std::net::SocketAddr,
    /// The state.
    pub state: TcpState,
    /// How long so far (at least, when `at_least`).
    pub for_ns: u64,
    /// True when the state began before watching did.
    pub at_least: bool,
    /// Who owns it.
    pub owner: Option<Owner>,
}

/// The human line for a stuck socket.
pub fn stuck_human(s: &Stuck) -> String {
    let hint = match s.state {
        TcpState::CloseWait => "the peer closed; this application never called close()",
        TcpState::FinWait2 => "we closed; the peer never sent its FIN",
        _ => "half-open: the final ACK of the handshake never came",
    };
    let owner = s.owner.as_ref().map_or_else(
        || "owner unknown".to_string(),
        |o| format!("pid {} ({})", o.pid, o.comm),
    );
    format!(
        "STUCK {}{} in {}  {} -> {}  {owner}: {hint}",
        if s.at_least { ">=" } else { "" },
        duration(s.for_ns),
        s.state,
        s.local,
        s.remote
    )
}

/// The JSON record for a stuck socket.
pub fn stuck_json(s: &Stuck) -> String {
    json!({
        "kind": "stuck",
        "local": s.local.to_string(),
        "remote": s.remote.to_string(),
        "state": s.state,
        "for_ns": s.for_ns,
        "at_least": s.at_least,
        "pid": s.owner.as_ref().map(|o| o.pid),
        "comm": s.owner.as_ref().map(|o| o.comm.clone()),
    })
    .to_string()
}

/// The summary at exit: sockets per state now, transitions seen, events lost.
#[derive(Debug, Default)]
pub struct Summary {
    /// Matching sockets per state at exit.
    pub now: BTreeMap<TcpState, u64>,
    /// Transitions seen, by the state entered.
    pub entered: BTreeMap<TcpState, u64>,
    /// Events the kernel lost.
    pub lost: u64,
}

impl Summary {
    /// Human form, like `ss -s`.
    pub fn human(&self) -> String {
        let total: u64 = self.now.values().sum();
        let mut s = format!("Sockets now: {total}\n");
        for (st, n) in &self.now {
            let _ = writeln!(s, "  {st:<11} {n}");
        }
        let seen: u64 = self.entered.values().sum();
        let _ = writeln!(s, "Transitions seen: {seen}");
        for (st, n) in &self.entered {
            let _ = writeln!(s, "  -> {st:<11} {n}");
        }
        let _ = write!(s, "Events lost: {}", self.lost);
        s
    }

    /// JSON form.
    pub fn json(&self) -> String {
        let names = |m: &BTreeMap<TcpState, u64>| -> serde_json::Map<String, Value> {
            m.iter()
                .map(|(k, v)| (k.name().to_string(), json!(v)))
                .collect()
        };
        json!({"kind": "summary", "now": names(&self.now), "entered": names(&self.entered), "lost": self.lost})
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcplab_core::event::Reset;

    fn released() -> Released {
        Released {
            change: StateChange {
                ts_ns: 5_000_000_000,
                local: "127.0.0.1:40000".parse().unwrap(),
                remote: "127.0.0.1:1".parse().unwrap(),
                from: Some(TcpState::SynSent),
                to: TcpState::Closed,
                source: Source::Tracepoint,
                poll_resolution: false,
                cookie: None,
                rst: Some(Reset {
                    direction: RstDirection::Received,
                    reason: Some("NO_SOCKET".into()),
                }),
                retransmits: 0,
                linux: None,
            },
            in_prev_ns: Some(120_000),
        }
    }

    #[test]
    fn human_line() {
        let owner = Owner {
            pid: 42,
            comm: "curl".into(),
        };
        assert_eq!(
            human(&released(), 3_600_000_000_000, Some(&owner)),
            " 01:00:05.000000  127.0.0.1:40000 -> 127.0.0.1:1     SYN_SENT -> CLOSED       \
             rcv RST (refused), SYN timeout, or CLOSE [rcv RST, peer's reason NO_SOCKET]  \
             (120us in SYN_SENT)  pid 42 (curl)"
        );
    }

    #[test]
    fn json_line_has_the_stable_fields() {
        let v: Value = serde_json::from_str(&json(&released(), None)).unwrap();
        assert_eq!(v["ts_ns"], 5_000_000_000u64);
        assert_eq!(v["local"], "127.0.0.1:40000");
        assert_eq!(v["remote"], "127.0.0.1:1");
        assert_eq!(v["from"], "SYN_SENT");
        assert_eq!(v["to"], "CLOSED");
        assert_eq!(v["source"], "tracepoint");
        assert_eq!(v["rst"]["reason"], "NO_SOCKET");
        assert_eq!(v["in_prev_ns"], 120_000);
        assert_eq!(v["legal"], true);
    }

    #[test]
    fn poll_changes_are_not_called_illegal() {
        let mut r = released();
        r.change.from = Some(TcpState::Established);
        r.change.to = TcpState::TimeWait;
        r.change.rst = None;
        assert!(cause(&r.change).starts_with("ILLEGAL"));
        r.change.poll_resolution = true;
        assert!(cause(&r.change).contains("missed"));
    }

    #[test]
    fn durations_and_summary() {
        assert_eq!(duration(999_999), "999us");
        assert_eq!(duration(12_340_000), "12.3ms");
        assert_eq!(duration(4_020_000_000), "4.02s");
        let mut s = Summary::default();
        s.now.insert(TcpState::TimeWait, 3);
        s.entered.insert(TcpState::Established, 2);
        assert_eq!(
            s.human(),
            "Sockets now: 3\n  TIME_WAIT   3\nTransitions seen: 2\n  -> ESTABLISHED 2\nEvents lost: 0"
        );
        assert!(s.json().contains("\"TIME_WAIT\":3"));
    }
}
