//! One timeline per connection: segments, kernel state changes and socket calls,
//! in causal order, each state change tied to what caused it.
//!
//! Have RFC 9293 §3.3.2 (the state diagram) and §3.10 (event processing) open.
//!
//! Inputs are plain data with timestamps on one clock (CLOCK_MONOTONIC ns):
//! [`Segment`]s from a capture, [`StateChange`]s from the kernel probes, [`Call`]s that
//! the in-process client and server report. [`build`] merges them; [`infer`] derives
//! the states from segments alone when no kernel events exist (`tcplab replay`, or a
//! run without tracing privileges), marking every state it made up as inferred.
//!
//! Why not sort by timestamp: on loopback a segment is sent and received within a
//! microsecond, and the kernel's event for "rcv FIN" can carry a time a hair *before*
//! the capture's time of that FIN. Each state change is therefore placed right after
//! the segment it received, or right before the segment it sent, never blindly by time.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::event::StateChange;
use crate::state::TcpState;

mod build;
mod from_wire;
mod infer;

pub use build::{build, build_connection, seq_ge, States};
pub use from_wire::segments_from_frames;
pub use infer::infer;

/// TCP header flag bits (RFC 9293 §3.1), as [`crate::wire::tcp`] defines them.
pub mod flags {
    pub use crate::wire::tcp::{ACK, FIN, PSH, RST, SYN, URG};
}

/// Which end of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The endpoint that sent the first SYN (the active opener).
    Client,
    /// The endpoint that answered it.
    Server,
}

impl Role {
    /// The other end.
    pub fn peer(self) -> Role {
        match self {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        }
    }

    /// `client` or `server`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Server => "server",
        }
    }
}

/// A TCP segment as seen on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Capture time, ns of CLOCK_MONOTONIC.
    pub ts_ns: u64,
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// Flag bits ([`flags`]).
    pub flags: u16,
    /// Raw sequence number.
    pub seq: u32,
    /// Raw acknowledgment number (meaningful with ACK).
    pub ack: u32,
    /// Advertised window, as in the header (not scaled).
    pub window: u16,
    /// Payload length in bytes (as on the wire, even when the capture cut it).
    pub len: u32,
    /// The first bytes of the payload, for previews.
    #[serde(with = "bytes_as_text")]
    pub payload: Vec<u8>,
    /// Options in tcpdump's words (`mss 65495`, `sackOK`, `wscale 7`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Segment {
    /// True when every bit of `f` is set.
    pub fn has(&self, f: u16) -> bool {
        self.flags & f == f
    }

    /// Sequence space this segment occupies: payload, plus one for SYN and for FIN.
    pub fn seq_len(&self) -> u32 {
        self.len + u32::from(self.has(flags::SYN)) + u32::from(self.has(flags::FIN))
    }

    /// Flags as tcpdump writes them inside brackets: `S`, `S.`, `P.`, `F.`, `R`, ...
    pub fn tcpdump_flags(&self) -> String {
        let mut s = String::new();
        for (bit, c) in [
            (flags::FIN, 'F'),
            (flags::SYN, 'S'),
            (flags::RST, 'R'),
            (flags::PSH, 'P'),
            (flags::URG, 'U'),
        ] {
            if self.has(bit) {
                s.push(c);
            }
        }
        if self.has(flags::ACK) {
            s.push('.');
        }
        if s.is_empty() {
            s.push_str("none");
        }
        s
    }

    /// Flags as a textbook writes them: `SYN`, `SYN,ACK`, `FIN,ACK`, `PSH,ACK`, `RST`.
    pub fn flag_names(&self) -> String {
        let names: Vec<&str> = [
            (flags::SYN, "SYN"),
            (flags::FIN, "FIN"),
            (flags::RST, "RST"),
            (flags::PSH, "PSH"),
            (flags::URG, "URG"),
            (flags::ACK, "ACK"),
        ]
        .iter()
        .filter(|(bit, _)| self.has(*bit))
        .map(|(_, n)| *n)
        .collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(",")
        }
    }
}

/// A socket call an in-process endpoint reports: what the application did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// ns of CLOCK_MONOTONIC: when the call was made, or for a call that waits
    /// (`accept()`, `read()`), when it returned.
    pub ts_ns: u64,
    /// Who called it.
    pub role: Role,
    /// The caller's socket address (for a listener's calls, the listening address), so
    /// calls find their connection.
    pub addr: SocketAddr,
    /// The call as a programmer writes it: `connect()`, `listen(5)`,
    /// `setsockopt(SO_REUSEADDR)`, `write(6)`, `close()`.
    pub call: String,
}

/// A socket call placed on a connection's timeline (its time is the entry's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallEntry {
    /// Who called it.
    pub role: Role,
    /// The caller's socket address.
    pub addr: SocketAddr,
    /// The call as a programmer writes it.
    pub call: String,
}

impl From<&Call> for CallEntry {
    fn from(c: &Call) -> Self {
        CallEntry {
            role: c.role,
            addr: c.addr,
            call: c.call.clone(),
        }
    }
}

/// What made a state change happen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Cause {
    /// A received segment: `segment` is its index in [`Connection::entries`].
    Received {
        /// Entry index of the segment.
        segment: usize,
        /// In the RFC's words: `rcv FIN / snd ACK`.
        explain: String,
    },
    /// A segment this endpoint sent, because of a call or a timer.
    Sent {
        /// Entry index of the segment.
        segment: usize,
        /// In the RFC's words: `CLOSE / snd FIN`.
        explain: String,
        /// Entry index of the call that triggered it, when known.
        call: Option<usize>,
    },
    /// A call with no segment of its own to show (e.g. close() of a listener).
    Call {
        /// Entry index of the call.
        call: usize,
        /// In the RFC's words.
        explain: String,
    },
    /// A timer (2MSL, FIN_WAIT2 timeout, retransmission limit).
    Timer {
        /// Which timer, in the RFC's words.
        explain: String,
    },
    /// Nothing on the timeline explains it (the segment was not captured).
    Unknown {
        /// What the RFC says would cause it.
        explain: String,
    },
}

impl Cause {
    /// The RFC words of the cause.
    pub fn explain(&self) -> &str {
        match self {
            Cause::Received { explain, .. }
            | Cause::Sent { explain, .. }
            | Cause::Call { explain, .. }
            | Cause::Timer { explain }
            | Cause::Unknown { explain } => explain,
        }
    }
}

/// A state change placed on a connection's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateEntry {
    /// Whose state.
    pub role: Role,
    /// Before (None: it already existed when observation began).
    pub from: Option<TcpState>,
    /// After.
    pub to: TcpState,
    /// What caused it.
    pub cause: Cause,
    /// True when no kernel event reported it: derived from segments by the RFC rules.
    pub inferred: bool,
    /// True when the kernel showed it only through sock_diag polls: time is approximate.
    pub poll_resolution: bool,
    /// How Linux showed it, when that differs from the RFC picture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux: Option<String>,
    /// The RST reason the kernel gave, when an RST caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rst_reason: Option<String>,
}

/// A segment placed on a connection's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentEntry {
    /// Who sent it.
    pub from: Role,
    /// Sequence number relative to the sender's initial one (Wireshark's rule).
    pub rel_seq: u32,
    /// Acknowledgment number relative to the receiver's initial sequence number.
    pub rel_ack: u32,
    /// The segment itself.
    pub segment: Segment,
    /// A retransmission: its sequence space was sent before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retransmission: bool,
    /// Dropped on the wire (the lab's impairable wire): never arrived.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lost: bool,
    /// What a pure ACK does beyond acknowledging, in Wireshark's terms, when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
}

/// What a pure ACK (no data, SYN, FIN or RST) does, as Wireshark's expert analysis
/// names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Analysis {
    /// One byte below what its sender already sent, while the peer's window is open:
    /// "are you still there?" (keepalive).
    KeepAlive,
    /// The same kind of segment while the peer's window is zero: the persist timer
    /// asking whether the window opened.
    ZeroWindowProbe,
    /// Advertises a window of zero: the receiver's buffer is full.
    ZeroWindow,
    /// Opens the window again after a zero window.
    WindowUpdate,
}

impl Analysis {
    /// How the ladder labels it.
    pub fn label(self) -> &'static str {
        match self {
            Analysis::KeepAlive => "KEEPALIVE",
            Analysis::ZeroWindowProbe => "ZERO WINDOW PROBE",
            Analysis::ZeroWindow => "ZERO WINDOW",
            Analysis::WindowUpdate => "WINDOW UPDATE",
        }
    }
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Item {
    /// A segment on the wire.
    Segment(SegmentEntry),
    /// A state change of one endpoint.
    State(StateEntry),
    /// A socket call of one endpoint.
    Call(CallEntry),
}

/// A timeline entry with its time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// ns of CLOCK_MONOTONIC.
    pub ts_ns: u64,
    /// What happened.
    #[serde(flatten)]
    pub item: Item,
}

/// One connection's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// The active opener's address.
    pub client: SocketAddr,
    /// The passive opener's address.
    pub server: SocketAddr,
    /// Everything, in causal order.
    pub entries: Vec<Entry>,
    /// The kernel parameters the run had (`net.ipv4.tcp_...` → value), where known:
    /// the lab records them inside its namespace; a capture file does not have them.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub kernel: std::collections::BTreeMap<String, String>,
}

impl Connection {
    /// Which role `addr` has here, if any.
    pub fn role_of(&self, addr: SocketAddr) -> Option<Role> {
        if addr == self.client {
            Some(Role::Client)
        } else if addr == self.server {
            Some(Role::Server)
        } else {
            None
        }
    }

    /// The address of `role`.
    pub fn addr(&self, role: Role) -> SocketAddr {
        match role {
            Role::Client => self.client,
            Role::Server => self.server,
        }
    }

    /// The states `role` went through, in order, starting with the first `from`.
    pub fn path(&self, role: Role) -> Vec<TcpState> {
        let mut path = Vec::new();
        for e in &self.entries {
            if let Item::State(s) = &e.item {
                if s.role == role {
                    if path.is_empty() {
                        if let Some(from) = s.from {
                            path.push(from);
                        }
                    }
                    path.push(s.to);
                }
            }
        }
        path
    }

    /// For each segment that caused state changes, a comment naming them, e.g.
    /// `client ESTABLISHED → CLOSE_WAIT (rcv FIN / snd ACK)`, with the RST reason the
    /// kernel gave and `inferred` where they apply, keyed by the segment's
    /// (capture time, raw seq, flags) so the captured frame can be found again (the
    /// annotated pcapng writes it as the packet's comment).
    pub fn segment_comments(&self) -> Vec<((u64, u32, u16), String)> {
        let mut notes: Vec<Vec<String>> = vec![Vec::new(); self.entries.len()];
        for e in &self.entries {
            if let Item::State(s) = &e.item {
                let segment = match &s.cause {
                    Cause::Received { segment, .. } | Cause::Sent { segment, .. } => *segment,
                    _ => continue,
                };
                let from = s.from.map_or("?", TcpState::name);
                let reason = s
                    .rst_reason
                    .as_ref()
                    .map(|r| format!(", reason {r}"))
                    .unwrap_or_default();
                let mark = if s.inferred { ", inferred" } else { "" };
                notes[segment].push(format!(
                    "{} {from} → {} ({}{reason}{mark})",
                    s.role.name(),
                    s.to,
                    s.cause.explain()
                ));
            }
        }
        self.entries
            .iter()
            .zip(notes)
            .filter_map(|(e, notes)| match &e.item {
                Item::Segment(s) if !notes.is_empty() => Some((
                    (s.segment.ts_ns, s.segment.seq, s.segment.flags),
                    notes.join("; "),
                )),
                _ => None,
            })
            .collect()
    }

    /// The segments' flags in order, as `S`, `S.`, `.`, `P.`, `F.`, `R`.
    pub fn flag_pattern(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter_map(|e| match &e.item {
                Item::Segment(s) => Some(s.segment.tcpdump_flags()),
                _ => None,
            })
            .collect()
    }
}

/// Kernel events for [`build`]: state changes as the probes report them.
pub type Changes = [StateChange];

/// Serializes payload bytes as text with `\xNN` escapes, readable in JSON.
mod bytes_as_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut text = String::with_capacity(bytes.len());
        for &b in bytes {
            match b {
                b'\\' => text.push_str("\\\\"),
                0x20..=0x7e => text.push(b as char),
                _ => text.push_str(&format!("\\x{b:02x}")),
            }
        }
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        let mut out = Vec::with_capacity(text.len());
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\' && b.get(i + 1) == Some(&b'\\') {
                out.push(b'\\');
                i += 2;
            } else if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') && i + 4 <= b.len() {
                let hex = std::str::from_utf8(&b[i + 2..i + 4]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 4;
                    }
                    Err(_) => {
                        out.push(b[i]);
                        i += 1;
                    }
                }
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;
