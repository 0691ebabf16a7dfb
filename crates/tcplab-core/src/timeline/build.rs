//! Merging segments, kernel state changes and socket calls into per-connection
//! timelines, with each state change attributed to its cause.

use std::net::SocketAddr;

use super::infer::walk;
use super::{
    flags, Analysis, Call, CallEntry, Cause, Connection, Entry, Item, Role, Segment, SegmentEntry,
    StateEntry,
};
use crate::event::{RstDirection, StateChange};
use crate::flow::{Endpoint, FlowKey, SegmentNumbers, WiresharkSeq};
use crate::state::{self, TcpState};

/// Segments of one connection, with the roles decided.
#[derive(Debug, Clone)]
pub(super) struct Conversation {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub segments: Vec<Segment>,
}

/// Splits segments into connections by 4-tuple, in order of first appearance. A SYN on
/// a tuple whose earlier connection already ended (FIN both ways, or RST) starts a new
/// connection, as a reused port does. The SYN's sender is the client; without a SYN,
/// the first sender is.
pub(super) fn conversations(segments: &[Segment]) -> Vec<Conversation> {
    let mut sorted: Vec<&Segment> = segments.iter().collect();
    sorted.sort_by_key(|s| s.ts_ns);
    let mut convs: Vec<(Conversation, bool)> = Vec::new();
    for seg in sorted {
        let pure_syn = seg.has(flags::SYN) && !seg.has(flags::ACK);
        let found = convs.iter().rposition(|(c, _)| {
            (c.client == seg.src && c.server == seg.dst)
                || (c.client == seg.dst && c.server == seg.src)
        });
        let reuse = match found {
            Some(i) => !(pure_syn && convs[i].1),
            None => false,
        };
        if !reuse {
            let client_is_src = pure_syn || !seg.has(flags::SYN);
            let (client, server) = if client_is_src {
                (seg.src, seg.dst)
            } else {
                (seg.dst, seg.src)
            };
            convs.push((
                Conversation {
                    client,
                    server,
                    segments: Vec::new(),
                },
                false,
            ));
        }
        let last = match found {
            Some(i) if reuse => i,
            _ => convs.len() - 1,
        };
        let (conv, ended) = &mut convs[last];
        conv.segments.push(seg.clone());
        *ended = ended_by(&conv.segments);
    }
    convs.into_iter().map(|(c, _)| c).collect()
}

/// True when a connection's segments show its end: an RST, or a FIN each way.
fn ended_by(segments: &[Segment]) -> bool {
    let rst = segments.iter().any(|s| s.has(flags::RST));
    let fin_from = |a: SocketAddr| segments.iter().any(|s| s.has(flags::FIN) && s.src == a);
    let first = &segments[0];
    rst || (fin_from(first.src) && fin_from(first.dst))
}

/// `a >= b` in sequence space (RFC 9293 §3.4, modulo 2^32).
pub fn seq_ge(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

/// Turns one conversation's segments into timeline entries: relative numbers by
/// Wireshark's rules ([`WiresharkSeq`]) and retransmission marks (sequence space sent
/// before, or a repeated SYN/FIN).
pub(super) fn segment_entries(conv: &Conversation) -> Vec<Entry> {
    let role_of = |a: SocketAddr| {
        if a == conv.client {
            Role::Client
        } else {
            Role::Server
        }
    };
    let idx = |r: Role| usize::from(r == Role::Server);
    // The same relative numbers as `capture --json` and Wireshark show.
    let mut relative = WiresharkSeq::default();
    let endpoint = |a: SocketAddr| Endpoint {
        addr: a.ip(),
        port: a.port(),
    };
    let mut next: [Option<u32>; 2] = [None, None];
    // The last window each side advertised was zero.
    let mut window_zero = [false; 2];
    conv.segments
        .iter()
        .map(|s| {
            let from = role_of(s.src);
            let me = idx(from);
            let end = s.seq.wrapping_add(s.seq_len());
            // It starts before the highest sequence number sent so far: old data again.
            let retransmission = s.seq_len() > 0 && next[me].is_some_and(|n| !seq_ge(s.seq, n));
            let pure_ack = s.flags & (flags::SYN | flags::FIN | flags::RST) == 0
                && s.has(flags::ACK)
                && s.len == 0;
            let analysis = if !pure_ack {
                None
            } else if next[me] == Some(s.seq.wrapping_add(1)) {
                Some(if window_zero[1 - me] {
                    Analysis::ZeroWindowProbe
                } else {
                    Analysis::KeepAlive
                })
            } else if s.window == 0 {
                Some(Analysis::ZeroWindow)
            } else if window_zero[me] {
                Some(Analysis::WindowUpdate)
            } else {
                None
            };
            if !s.has(flags::RST) {
                window_zero[me] = s.window == 0;
            }
            if next[me].is_none_or(|n| seq_ge(end, n)) {
                next[me] = Some(end);
            }
            let (key, dir) = FlowKey::new(endpoint(s.src), endpoint(s.dst));
            let rel = relative.observe(
                key,
                dir,
                SegmentNumbers {
                    flags: s.flags,
                    seq: s.seq,
                    ack: s.ack,
                },
            );
            Entry {
                ts_ns: s.ts_ns,
                item: Item::Segment(SegmentEntry {
                    from,
                    rel_seq: rel.seq,
                    rel_ack: rel.ack,
                    segment: s.clone(),
                    retransmission,
                    lost: false,
                    analysis,
                }),
            }
        })
        .collect()
}

/// Where a state change sits relative to the segments: right after the segment it
/// received, right before the segment it sent, or by its own time.
#[derive(Debug, Clone, Copy)]
pub(super) enum Anchor {
    After(usize),
    Before(usize),
    Time,
}

/// What the RFC says causes `from → to` for this endpoint.
enum Expect {
    /// A received segment matching the test.
    Rcv(&'static str, fn(&Segment, &Ctx) -> bool),
    /// A sent segment matching the test; `calls` are the calls that trigger it.
    Snd(
        &'static str,
        fn(&Segment, &Ctx) -> bool,
        &'static [&'static str],
    ),
    /// A timer.
    Timer(&'static str),
    /// A call with no segment (close of a listener, ...).
    CallOnly(&'static [&'static str]),
    /// Nothing the RFC names explains it.
    Unknown(&'static str),
}

/// What the tests of [`Expect`] may consult.
struct Ctx {
    /// End of this endpoint's FIN in sequence space (its seq + len + 1), when it sent one.
    fin_end: Option<u32>,
}

/// What caused `from → to`; `rst` is the RST that came with it, `polled` whether two
/// sock_diag polls saw it (the states between them unseen).
fn expect(from: Option<TcpState>, to: TcpState, rst: Option<RstDirection>, polled: bool) -> Expect {
    use TcpState::*;
    if polled && from.is_some_and(|f| !state::is_legal(f, to)) {
        return Expect::Unknown("seen by two sock_diag polls: the states between them were missed");
    }
    match (from, to, rst) {
        (_, _, Some(RstDirection::Received)) => Expect::Rcv("rcv RST", |s, _| s.has(flags::RST)),
        (_, _, Some(RstDirection::Sent)) => {
            Expect::Snd("ABORT / snd RST", |s, _| s.has(flags::RST), &["close()"])
        }
        (Some(Closed), SynSent, _) => Expect::Snd(
            "active OPEN / snd SYN",
            |s, _| s.has(flags::SYN) && !s.has(flags::ACK),
            &["connect()"],
        ),
        (Some(Listen), SynRecv, _) | (Some(SynSent), SynRecv, _) => {
            Expect::Rcv("rcv SYN / snd SYN,ACK", |s, _| {
                s.has(flags::SYN) && !s.has(flags::ACK)
            })
        }
        (Some(SynSent), Established, _) => Expect::Rcv("rcv SYN,ACK / snd ACK", |s, _| {
            s.has(flags::SYN | flags::ACK)
        }),
        (Some(SynRecv), Established, _) => Expect::Rcv("rcv ACK of SYN", |s, _| {
            s.has(flags::ACK) && !s.has(flags::SYN) && !s.has(flags::RST)
        }),
        (Some(SynSent), Closed, _) => Expect::Rcv("rcv RST (refused)", |s, _| s.has(flags::RST)),
        (Some(Established | SynRecv), FinWait1, _) => Expect::Snd(
            "CLOSE / snd FIN",
            |s, _| s.has(flags::FIN),
            &["close()", "shutdown(SHUT_WR)"],
        ),
        (Some(CloseWait), LastAck, _) => Expect::Snd(
            "CLOSE / snd FIN",
            |s, _| s.has(flags::FIN),
            &["close()", "shutdown(SHUT_WR)"],
        ),
        (Some(Established), CloseWait, _) => {
            Expect::Rcv("rcv FIN / snd ACK", |s, _| s.has(flags::FIN))
        }
        (Some(FinWait1), Closing, _) => {
            Expect::Rcv("rcv FIN / snd ACK (simultaneous close)", |s, _| {
                s.has(flags::FIN)
            })
        }
        (Some(FinWait1 | FinWait2), TimeWait, _) => {
            Expect::Rcv("rcv FIN / snd ACK", |s, _| s.has(flags::FIN))
        }
        (Some(FinWait1), FinWait2, _)
        | (Some(LastAck), Closed, _)
        | (Some(Closing), TimeWait, _) => Expect::Rcv("rcv ACK of FIN", |s, ctx| {
            s.has(flags::ACK) && ctx.fin_end.is_some_and(|end| seq_ge(s.ack, end))
        }),
        (Some(TimeWait), Closed, _) => Expect::Timer("2MSL timeout (60 s on Linux)"),
        (Some(FinWait2), Closed, _) => Expect::Timer("FIN_WAIT2 timeout (tcp_fin_timeout)"),
        (Some(Listen), Closed, _) | (Some(Closed), Listen, _) => {
            Expect::CallOnly(&["close()", "listen()"])
        }
        // Polls know nothing of RSTs: a close they saw may be one, or a LAST_ACK missed.
        (_, Closed, _) if polled => {
            Expect::Unknown("seen by sock_diag polls: an RST, or a LAST_ACK between two polls")
        }
        (_, Closed, _) => Expect::Rcv("rcv RST", |s, _| s.has(flags::RST)),
        _ => Expect::Unknown("no segment or call explains this"),
    }
}

/// Builds one timeline per connection seen in `segments`, with the kernel's `changes`
/// and the endpoints' `calls` placed causally. Changes and calls that belong to no
/// captured connection are left out.
pub fn build(segments: &[Segment], changes: &[StateChange], calls: &[Call]) -> Vec<Connection> {
    conversations(segments)
        .iter()
        .map(|conv| build_one(conv, States::Kernel(changes), calls))
        .collect()
}

/// Builds the timeline of the one connection between `client` and `server`, from
/// whatever exists: segments (if a capture ran), kernel changes (if tracing ran), and
/// calls. Used by `tcplab lab`, which knows both addresses, and works when segments are
/// missing (no capture privilege). Of several connections on the tuple, the last one.
pub fn build_connection(
    client: SocketAddr,
    server: SocketAddr,
    segments: &[Segment],
    states: States<'_>,
    calls: &[Call],
) -> Connection {
    let mut conv = conversations(segments)
        .into_iter()
        .rev()
        .find(|c| {
            (c.client == client && c.server == server) || (c.client == server && c.server == client)
        })
        .unwrap_or(Conversation {
            client,
            server,
            segments: Vec::new(),
        });
    conv.client = client;
    conv.server = server;
    build_one(&conv, states, calls)
}

/// Which role `change` belongs to in `conv`, if it is this connection's. A client's
/// `CLOSE → SYN_SENT` comes with local port 0 (the port is picked after the event):
/// it belongs to the connection to that server from that address that starts nearest.
fn role_in(conv: &Conversation, change: &StateChange) -> Option<Role> {
    if change.local == conv.client && change.remote == conv.server {
        Some(Role::Client)
    } else if change.local == conv.server && change.remote == conv.client {
        Some(Role::Server)
    } else if change.local.port() == 0
        && change.local.ip() == conv.client.ip()
        && change.remote == conv.server
        && change.to == TcpState::SynSent
    {
        // Without segments there is nothing to tell two connections apart by: the
        // caller asked for this tuple, so it is this one.
        let Some(first) = conv.segments.first() else {
            return Some(Role::Client);
        };
        let gap = first.ts_ns.abs_diff(change.ts_ns);
        (gap < 1_000_000_000).then_some(Role::Client)
    } else {
        None
    }
}

/// Where a timeline's state changes come from.
#[derive(Debug, Clone, Copy)]
pub enum States<'a> {
    /// The kernel's own changes (tracepoints, or sock_diag polls), attributed here.
    Kernel(&'a [StateChange]),
    /// None from the kernel: inferred from the segments by the RFC 9293 rules
    /// ([`super::infer`]), each marked inferred.
    Inferred,
}

pub(super) fn build_one(conv: &Conversation, states: States<'_>, calls: &[Call]) -> Connection {
    let mut entries = segment_entries(conv);
    let n_segments = entries.len();
    // The same order as the segment entries.
    let segs: Vec<(Role, &Segment)> = conv
        .segments
        .iter()
        .map(|s| {
            let role = if s.src == conv.client {
                Role::Client
            } else {
                Role::Server
            };
            (role, s)
        })
        .collect();
    let fin_end = |role: Role| {
        segs.iter()
            .find(|(r, s)| *r == role && s.has(flags::FIN))
            .map(|(_, s)| s.seq.wrapping_add(s.len).wrapping_add(1))
    };
    let ctxs = [
        Ctx {
            fin_end: fin_end(Role::Client),
        },
        Ctx {
            fin_end: fin_end(Role::Server),
        },
    ];
    let my_calls: Vec<&Call> = calls
        .iter()
        .filter(|c| c.addr == conv.addr_of(c.role))
        .collect();
    let call_base = n_segments;
    for c in &my_calls {
        entries.push(Entry {
            ts_ns: c.ts_ns,
            item: Item::Call(CallEntry::from(*c)),
        });
    }

    // The call of `role` at or before `ts` whose name is one of `names`: the one that
    // made the kernel act.
    let call_before = |role: Role, ts: u64, names: &[&str]| {
        my_calls
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.role == role
                    && c.ts_ns <= ts
                    && names
                        .iter()
                        .any(|n| c.call.starts_with(n.trim_end_matches("()")))
            })
            .max_by_key(|(_, c)| c.ts_ns)
            .map(|(i, _)| call_base + i)
    };

    let mut anchors: Vec<Anchor> = vec![Anchor::Time; entries.len()];
    let changes = match states {
        States::Kernel(changes) => changes,
        States::Inferred => {
            for (i, place, role, from, to, sent) in walk(&conv.segments, conv.client) {
                let seg = &conv.segments[i];
                // The segment says which of the RFC's causes of a close it was.
                let explain = match (seg.has(flags::RST), sent, from) {
                    (true, true, _) => "ABORT / snd RST".to_string(),
                    (true, false, TcpState::SynSent) => "rcv RST (refused)".to_string(),
                    (true, false, _) => "rcv RST".to_string(),
                    (false, ..) => state::explain(from, to),
                };
                let (cause, anchor) = if sent {
                    let rst = seg.has(flags::RST).then_some(RstDirection::Sent);
                    let call = match expect(Some(from), to, rst, false) {
                        Expect::Snd(_, _, names) => call_before(role, seg.ts_ns, names),
                        _ => None,
                    };
                    (
                        Cause::Sent {
                            segment: i,
                            explain,
                            call,
                        },
                        Anchor::Before(place),
                    )
                } else {
                    (
                        Cause::Received {
                            segment: i,
                            explain,
                        },
                        Anchor::After(place),
                    )
                };
                entries.push(Entry {
                    ts_ns: seg.ts_ns,
                    item: Item::State(StateEntry {
                        role,
                        from: Some(from),
                        to,
                        cause,
                        inferred: true,
                        poll_resolution: false,
                        linux: None,
                        rst_reason: None,
                    }),
                });
                anchors.push(anchor);
            }
            &[]
        }
    };
    for change in changes {
        let Some(role) = role_in(conv, change) else {
            continue;
        };
        let ctx = &ctxs[usize::from(role == Role::Server)];
        let nearest = |want_from: Role, test: fn(&Segment, &Ctx) -> bool| {
            segs.iter()
                .enumerate()
                .filter(|(_, (from, s))| *from == want_from && test(s, ctx))
                .min_by_key(|(_, (_, s))| s.ts_ns.abs_diff(change.ts_ns))
                .map(|(i, _)| i)
        };
        let call_before = |names: &[&str]| call_before(role, change.ts_ns, names);
        let rst = change.rst.as_ref().map(|r| r.direction);
        let expected = expect(change.from, change.to, rst, change.poll_resolution);
        let (cause, anchor) = match (change.from, expected) {
            // A socket first found by a poll: it changed at some time since the last one.
            (None, _) => (
                Cause::Unknown {
                    explain: "first seen by a sock_diag poll".into(),
                },
                Anchor::Time,
            ),
            (_, expected) => match expected {
                Expect::Rcv(explain, test) => match nearest(role.peer(), test) {
                    Some(i) => (
                        Cause::Received {
                            segment: i,
                            explain: explain.into(),
                        },
                        Anchor::After(i),
                    ),
                    None => (
                        Cause::Unknown {
                            explain: format!("{explain} (segment not captured)"),
                        },
                        Anchor::Time,
                    ),
                },
                Expect::Snd(explain, test, names) => match nearest(role, test) {
                    Some(i) => (
                        Cause::Sent {
                            segment: i,
                            explain: explain.into(),
                            call: call_before(names),
                        },
                        Anchor::Before(i),
                    ),
                    None => (
                        Cause::Unknown {
                            explain: format!("{explain} (segment not captured)"),
                        },
                        Anchor::Time,
                    ),
                },
                Expect::Timer(explain) => (
                    Cause::Timer {
                        explain: explain.into(),
                    },
                    Anchor::Time,
                ),
                Expect::Unknown(explain) => (
                    Cause::Unknown {
                        explain: explain.into(),
                    },
                    Anchor::Time,
                ),
                Expect::CallOnly(names) => match call_before(names) {
                    Some(call) => (
                        Cause::Call {
                            call,
                            explain: change.explain(),
                        },
                        Anchor::Time,
                    ),
                    None => (
                        Cause::Unknown {
                            explain: change.explain(),
                        },
                        Anchor::Time,
                    ),
                },
            },
        };
        let linux = change.linux.clone().or_else(|| {
            (change.from == Some(TcpState::Listen) && change.to == TcpState::SynRecv)
                .then(|| state::LINUX_CHILD_SYN_RECV.to_string())
        });
        entries.push(Entry {
            ts_ns: change.ts_ns,
            item: Item::State(StateEntry {
                role,
                from: change.from,
                to: change.to,
                cause,
                inferred: false,
                poll_resolution: change.poll_resolution,
                linux,
                rst_reason: change.rst.as_ref().and_then(|r| r.reason.clone()),
            }),
        });
        anchors.push(anchor);
    }
    let entries = causal_order(entries, &anchors, n_segments);
    Connection {
        client: conv.client,
        server: conv.server,
        entries,
        kernel: Default::default(),
    }
}

impl Conversation {
    fn addr_of(&self, role: Role) -> SocketAddr {
        match role {
            Role::Client => self.client,
            Role::Server => self.server,
        }
    }
}

/// Orders entries: segments by capture order; each anchored state change right after
/// (or before) its segment; everything else by time among them. Cause indices are
/// rewritten to the new positions.
pub(super) fn causal_order(
    entries: Vec<Entry>,
    anchors: &[Anchor],
    n_segments: usize,
) -> Vec<Entry> {
    // Key: (segment position, rank, time, original index). A segment at position p has
    // rank 1; what it caused comes right after it (rank 2), what caused it right before
    // (rank 0), and anything else sits among the segments by its own time (rank 0 at
    // the position of the first segment captured after it).
    let seg_ts: Vec<u64> = entries[..n_segments].iter().map(|e| e.ts_ns).collect();
    let key = |i: usize| -> (usize, u8, u64, usize) {
        let ts = entries[i].ts_ns;
        if i < n_segments {
            return (i, 1, ts, i);
        }
        match anchors[i] {
            Anchor::After(s) => (s, 2, ts, i),
            Anchor::Before(s) => (s, 0, ts, i),
            Anchor::Time => (seg_ts.partition_point(|&t| t <= ts), 0, ts, i),
        }
    };
    let mut keys: Vec<(usize, u8, u64, usize)> = (0..entries.len()).map(key).collect();
    // One socket's changes happen in the kernel's order: an anchor may not move a change
    // before an earlier change of the same endpoint (with crossing FINs, the FIN_WAIT1
    // made by close() anchors at our FIN, which the wire may release after theirs).
    for role in [Role::Client, Role::Server] {
        let mut mine: Vec<usize> = (0..entries.len())
            // Only the kernel's own changes carry its times; inferred ones are placed by
            // their segments alone.
            .filter(
                |&i| matches!(&entries[i].item, Item::State(s) if s.role == role && !s.inferred),
            )
            .collect();
        mine.sort_by_key(|&i| (entries[i].ts_ns, i));
        let mut latest: Option<(usize, u8, u64, usize)> = None;
        for i in mine {
            if let Some(prev) = latest {
                if keys[i] < prev {
                    keys[i] = (prev.0, prev.1, prev.2, prev.3.max(i));
                    // Still after `prev`, which it now ties with but for the index.
                    if keys[i] <= prev {
                        keys[i].3 = prev.3 + 1;
                    }
                }
            }
            latest = Some(keys[i]);
        }
    }
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&i| keys[i]);
    let mut new_pos = vec![0; entries.len()];
    for (pos, &old) in order.iter().enumerate() {
        new_pos[old] = pos;
    }
    let mut slots: Vec<Option<Entry>> = entries.into_iter().map(Some).collect();
    order
        .iter()
        .map(|&old| {
            let mut e = slots[old].take().expect("each entry once");
            if let Item::State(s) = &mut e.item {
                match &mut s.cause {
                    Cause::Received { segment, .. } => *segment = new_pos[*segment],
                    Cause::Sent { segment, call, .. } => {
                        *segment = new_pos[*segment];
                        if let Some(c) = call {
                            *c = new_pos[*c];
                        }
                    }
                    Cause::Call { call, .. } => *call = new_pos[*call],
                    Cause::Timer { .. } | Cause::Unknown { .. } => {}
                }
            }
            e
        })
        .collect()
}
