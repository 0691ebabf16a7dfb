//! Turns what the probes saw into RFC state changes, per socket. No I/O: time and
//! observations are parameters, so every rule here is unit-tested.
//!
//! The rules (DESIGN.md, "Kernel state events"):
//! - `CLOSE → SYN_SENT` comes with local port 0; the next event of that connection names
//!   the port, and the held SYN_SENT gets it.
//! - An accepted child fires `LISTEN → SYN_RECV` at the third ACK. If a poll already
//!   showed the request socket, that SYN_RECV was reported then and is not repeated.
//! - `FIN_WAIT1/FIN_WAIT2/CLOSING → CLOSE` of a full socket usually means a timewait
//!   mini-socket took over; a sock_diag poll right after tells TIME_WAIT (and since when:
//!   its timer started at 60 s) from FIN_WAIT2, or that none exists (a real close).
//! - Timewait and request sockets are followed by polling; their disappearance is
//!   `TIME_WAIT → CLOSED` or a dropped half-open `SYN_RECV → CLOSED`.
//! - RSTs attach to the change of the socket that sent or received them, whichever
//!   order the tracepoints fired in: changes are held `hold_ns` before release.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use tcplab_core::event::{Reset, RstDirection, Source, StateChange};
use tcplab_core::state::{self, LinuxClose, TcpState};

use crate::probe::sockdiag::DiagSocket;
use crate::probe::tracefs::TraceEvent;

/// (local, remote).
pub type Tuple = (SocketAddr, SocketAddr);

/// Linux's TIME_WAIT length (TCP_TIMEWAIT_LEN).
const TIMEWAIT_NS: u64 = 60_000_000_000;
/// How close a timewait socket's start must be to the tracepoint's CLOSE to be the same
/// moment (the timer has jiffy resolution).
const SAME_MOMENT_NS: u64 = 10_000_000;
/// Polls in a row that must miss a socket before it counts as gone: a netlink dump is
/// not atomic, and a socket hashed during it can be skipped.
const MISSES_FOR_GONE: u8 = 3;
/// How long a change found by a poll waits for tracepoint lines that date it better.
const FOUND_HOLD_NS: u64 = 30_000_000;

/// A released change and the time its endpoint spent in the previous state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// The change.
    pub change: StateChange,
    /// ns in `change.from`, when we saw it begin.
    pub in_prev_ns: Option<u64>,
}

/// What we know of one live socket.
#[derive(Debug, Clone)]
pub struct Conn {
    /// Its state.
    pub state: TcpState,
    /// Since when (CLOCK_MONOTONIC ns).
    pub since_ns: u64,
    /// False when `since_ns` is only when we started watching.
    pub since_known: bool,
    cookie: Option<u64>,
    retransmits: u32,
}

#[derive(Debug)]
struct Awaiting {
    from: TcpState,
    ts_ns: u64,
    /// Polls that did not show a timewait socket for it.
    misses: u8,
}

#[derive(Debug)]
struct Tw {
    substate: TcpState,
    last_seen_ns: u64,
    expires_ms: u32,
    /// Whether its TIME_WAIT was reported (or it was in TIME_WAIT at the snapshot).
    announced: bool,
    /// Polls in a row that did not show it.
    misses: u8,
}

#[derive(Debug)]
struct Req {
    missing_polls: u8,
    child_seen: bool,
}

/// The correlator.
#[derive(Debug)]
pub struct Correlator {
    /// Changes not yet released, in time order, each with the earliest release time.
    pending: Vec<(StateChange, u64)>,
    conns: HashMap<Tuple, Conn>,
    awaiting: HashMap<Tuple, Awaiting>,
    tw: HashMap<Tuple, Tw>,
    req: HashMap<Tuple, Req>,
    resets: HashMap<Tuple, (u64, Reset)>,
    peer_reason: HashMap<Tuple, (u64, String)>,
    fallback: HashMap<u64, (Tuple, TcpState)>,
    fallback_misses: HashMap<u64, u8>,
    /// RSTs a listener sent (time, listener address, reason): the tracepoint then names
    /// the listener's addresses, not the packet's, so the peer is unknown.
    listener_rsts: Vec<(u64, SocketAddr, String)>,
    /// When a peer on this machine sent the FIN a FIN_WAIT2 mini-socket waits for,
    /// keyed by the mini-socket's tuple.
    peer_fin: HashMap<Tuple, u64>,
    hold_ns: u64,
    /// Events the kernel said it lost (`[LOST n EVENTS]`).
    pub lost: u64,
}

impl Correlator {
    /// A correlator that holds changes `hold_ns` before release.
    pub fn new(hold_ns: u64) -> Correlator {
        Correlator {
            pending: Vec::new(),
            conns: HashMap::new(),
            awaiting: HashMap::new(),
            tw: HashMap::new(),
            req: HashMap::new(),
            resets: HashMap::new(),
            peer_reason: HashMap::new(),
            fallback: HashMap::new(),
            fallback_misses: HashMap::new(),
            listener_rsts: Vec::new(),
            peer_fin: HashMap::new(),
            hold_ns,
            lost: 0,
        }
    }

    /// Live sockets as last released.
    pub fn conns(&self) -> &HashMap<Tuple, Conn> {
        &self.conns
    }

    /// True when a tracepoint CLOSE waits for a sock_diag poll to be understood.
    pub fn needs_mini_poll(&self) -> bool {
        !self.awaiting.is_empty() || !self.peer_fin.is_empty()
    }

    fn unresolved(c: &StateChange) -> bool {
        c.to == TcpState::SynSent && c.local.port() == 0
    }

    fn push(&mut self, c: StateChange) {
        let release_at = c.ts_ns.saturating_add(self.hold_ns);
        self.insert(c, release_at);
    }

    /// Pushes a change found by a poll at `now_ns` but dated earlier: it is held as long
    /// as a tracepoint change, counted from its discovery, so events read later can still
    /// refine its time.
    fn push_found(&mut self, c: StateChange, now_ns: u64) {
        let release_at = now_ns.saturating_add(self.hold_ns.max(FOUND_HOLD_NS));
        self.insert(c, release_at);
    }

    fn insert(&mut self, c: StateChange, release_at: u64) {
        let at = self.pending.partition_point(|p| p.0.ts_ns <= c.ts_ns);
        self.pending.insert(at, (c, release_at));
    }

    fn change(
        ts_ns: u64,
        t: Tuple,
        from: Option<TcpState>,
        to: TcpState,
        source: Source,
    ) -> StateChange {
        StateChange {
            ts_ns,
            local: t.0,
            remote: t.1,
            from,
            to,
            source,
            poll_resolution: source == Source::Sockdiag,
            cookie: None,
            rst: None,
            retransmits: 0,
            linux: None,
        }
    }

    /// Feeds one tracepoint event.
    pub fn on_trace(&mut self, ev: TraceEvent) {
        match ev {
            TraceEvent::SetState {
                ts_ns,
                local,
                remote,
                old,
                new,
            } => {
                let (Some(from), Some(to)) = (TcpState::from_linux(old), TcpState::from_linux(new))
                else {
                    return;
                };
                let t = (local, remote);
                if from == TcpState::SynSent && local.port() != 0 {
                    self.resolve_port(t, ts_ns);
                }
                if from == TcpState::Listen && to == TcpState::SynRecv {
                    if let Some(r) = self.req.get_mut(&t) {
                        // Already reported from the request socket.
                        r.child_seen = true;
                        return;
                    }
                    let mut c = Self::change(ts_ns, t, Some(from), to, Source::Tracepoint);
                    c.linux = Some(state::LINUX_CHILD_SYN_RECV.to_string());
                    self.push(c);
                    return;
                }
                let peer = (remote, local);
                if to == TcpState::LastAck
                    && self
                        .tw
                        .get(&peer)
                        .is_some_and(|tw| tw.substate == TcpState::FinWait2)
                {
                    // The peer's FIN is on its way to our FIN_WAIT2 mini-socket: poll now,
                    // and date its TIME_WAIT by this FIN rather than by the coarse timer.
                    self.peer_fin.insert(peer, ts_ns);
                }
                if to == TcpState::LastAck {
                    self.refine_by_peer_fin(peer, ts_ns);
                }
                if to == TcpState::Closed {
                    let reset = self.resets.contains_key(&t);
                    if state::linux_close(from, reset) == LinuxClose::HandedToTimewait {
                        self.awaiting.insert(
                            t,
                            Awaiting {
                                from,
                                ts_ns,
                                misses: 0,
                            },
                        );
                        return;
                    }
                }
                self.push(Self::change(ts_ns, t, Some(from), to, Source::Tracepoint));
            }
            TraceEvent::SendReset {
                ts_ns,
                local,
                remote,
                reason,
            } => {
                let (Some(local), Some(remote)) = (local, remote) else {
                    return;
                };
                if remote.port() == 0 && remote.ip().is_unspecified() {
                    self.listener_rsts.push((ts_ns, local, reason));
                    return;
                }
                let peer = (remote, local);
                if let Some((_, r)) = self.resets.get_mut(&peer) {
                    if r.direction == RstDirection::Received && r.reason.is_none() {
                        r.reason = Some(reason.clone());
                    }
                }
                self.peer_reason.insert(peer, (ts_ns, reason.clone()));
                let reset = Reset {
                    direction: RstDirection::Sent,
                    reason: Some(reason),
                };
                self.resets.insert((local, remote), (ts_ns, reset));
            }
            TraceEvent::ReceiveReset {
                ts_ns,
                local,
                remote,
                ..
            } => {
                let t = (local, remote);
                let reason = self.peer_reason.remove(&t).map(|(_, r)| r);
                let reset = Reset {
                    direction: RstDirection::Received,
                    reason,
                };
                self.resets.insert(t, (ts_ns, reset));
            }
            TraceEvent::Retransmit {
                ts_ns,
                local,
                remote,
            } => {
                // A retransmitted SYN names the port its SYN_SENT lacked.
                self.resolve_port((local, remote), ts_ns);
                if let Some(c) = self.conns.get_mut(&(local, remote)) {
                    c.retransmits += 1;
                }
            }
            TraceEvent::Lost { count } => self.lost += count,
        }
    }

    /// A FIN_WAIT2 -> TIME_WAIT found by a poll before we read the local peer's
    /// `CLOSE_WAIT -> LAST_ACK`: that FIN is what moved it; take its time.
    fn refine_by_peer_fin(&mut self, t: Tuple, fin_ts: u64) {
        let Some(i) = self.pending.iter().position(|(c, _)| {
            c.local == t.0
                && c.remote == t.1
                && c.from == Some(TcpState::FinWait2)
                && c.to == TcpState::TimeWait
                && c.source == Source::Sockdiag
        }) else {
            return;
        };
        let (mut c, release_at) = self.pending.remove(i);
        // The found change was dated no earlier than the socket's CLOSE; keep that bound.
        let lower = self
            .pending
            .iter()
            .filter(|(p, _)| p.local == t.0 && p.remote == t.1 && p.ts_ns <= c.ts_ns)
            .map(|(p, _)| p.ts_ns)
            .max()
            .unwrap_or(0);
        c.ts_ns = fin_ts.max(lower);
        c.linux = Some("the FIN reached the FIN_WAIT2 mini-socket; time of the peer's FIN".into());
        self.peer_fin.remove(&t);
        self.insert(c, release_at);
    }

    /// Gives the held port-0 SYN_SENT of `t`'s connection its port.
    /// Also notices a TIME_WAIT socket of the same tuple that this connect() recycled
    /// (`net.ipv4.tcp_tw_reuse`, on by default for loopback).
    fn resolve_port(&mut self, t: Tuple, ts_ns: u64) {
        let mut zero = t.0;
        zero.set_port(0);
        let mut syn_ts = ts_ns;
        if let Some(c) = self
            .pending
            .iter_mut()
            .map(|(c, _)| c)
            .find(|c| c.to == TcpState::SynSent && c.local == zero && c.remote == t.1)
        {
            c.local = t.0;
            syn_ts = c.ts_ns;
        } else if let Some(conn) = self.conns.remove(&(zero, t.1)) {
            self.conns.insert(t, conn);
        }
        if let Some(tw) = self.tw.remove(&t) {
            self.peer_fin.remove(&t);
            if tw.substate == TcpState::TimeWait && tw.announced {
                // Dated just before the new SYN_SENT, in which connect() reused the tuple.
                let ts = syn_ts.saturating_sub(1);
                let mut c = Self::change(
                    ts,
                    t,
                    Some(TcpState::TimeWait),
                    TcpState::Closed,
                    Source::Tracepoint,
                );
                c.linux = Some(
                    "recycled by a new connect() to the same peer (net.ipv4.tcp_tw_reuse)".into(),
                );
                self.push(c);
            }
        }
    }

    /// Feeds a poll of the mini-socket states ([`crate::probe::sockdiag::MINI_STATES`]),
    /// already filtered, taken at `now_ns` after every trace line read so far.
    pub fn on_mini_poll(&mut self, now_ns: u64, sockets: &[DiagSocket]) {
        let mut seen_tw = HashSet::new();
        let mut seen_req = HashSet::new();
        for s in sockets {
            let t = (s.local, s.remote);
            let Some(st) = TcpState::from_linux(u32::from(s.state)) else {
                continue;
            };
            if s.is_timewait() {
                seen_tw.insert(t);
                self.on_timewait(now_ns, t, st, s);
            } else if st == TcpState::SynRecv {
                seen_req.insert(t);
                let known = self.req.contains_key(&t) || self.conns.contains_key(&t);
                if !known {
                    self.req.insert(
                        t,
                        Req {
                            missing_polls: 0,
                            child_seen: false,
                        },
                    );
                    let mut c = Self::change(
                        now_ns,
                        t,
                        Some(TcpState::Listen),
                        TcpState::SynRecv,
                        Source::Sockdiag,
                    );
                    c.cookie = Some(s.cookie);
                    c.linux = Some("half-open: a request socket, seen by sock_diag poll".into());
                    self.push(c);
                }
            }
        }
        // A tracepoint CLOSE with no timewait socket behind it was a real close. A dump
        // is not atomic (sockets hashed meanwhile can be skipped), so it takes
        // MISSES_FOR_GONE polls in a row to conclude.
        let mut closed = Vec::new();
        for (t, a) in self.awaiting.iter_mut() {
            a.misses += 1;
            if a.misses >= MISSES_FOR_GONE {
                closed.push(*t);
            }
        }
        for t in closed {
            let Some(a) = self.awaiting.remove(&t) else {
                continue;
            };
            if let Some((rst_ts, reason)) = self.rst_to(t, a.ts_ns) {
                // The peer answered this tuple with RST after our CLOSE: only a timewait
                // socket could have sent what it answered. It existed, and the RST killed it.
                let mut c = Self::change(
                    a.ts_ns,
                    t,
                    Some(a.from),
                    TcpState::TimeWait,
                    Source::Tracepoint,
                );
                c.linux = Some(format!(
                    "tracepoint: {} -> CLOSE; a TIME_WAIT mini-socket took over",
                    a.from
                ));
                self.push(c);
                self.push(Self::tw_killed(t, rst_ts, reason));
                continue;
            }
            let mut c = Self::change(
                a.ts_ns,
                t,
                Some(a.from),
                TcpState::Closed,
                Source::Tracepoint,
            );
            c.linux = Some(
                "no timewait socket found: an RST killed it before the first poll, \
                 or the kernel made none (TcpExtTCPTimeWaitOverflow)"
                    .into(),
            );
            self.push(c);
        }
        let mut gone = Vec::new();
        for (t, tw) in self.tw.iter_mut() {
            if seen_tw.contains(t) {
                tw.misses = 0;
            } else {
                tw.misses += 1;
                if tw.misses >= MISSES_FOR_GONE {
                    gone.push(*t);
                }
            }
        }
        for t in gone {
            self.peer_fin.remove(&t);
            let Some(tw) = self.tw.remove(&t) else {
                continue;
            };
            if tw.substate == TcpState::TimeWait && tw.announced {
                if let Some((rst_ts, reason)) =
                    self.rst_to(t, tw.last_seen_ns.saturating_sub(1_000_000_000))
                {
                    self.push(Self::tw_killed(t, rst_ts, reason));
                    continue;
                }
            }
            let expiry = tw.last_seen_ns + u64::from(tw.expires_ms) * 1_000_000;
            let ts = expiry.clamp(tw.last_seen_ns, now_ns);
            let mut c = Self::change(ts, t, Some(tw.substate), TcpState::Closed, Source::Sockdiag);
            c.linux = Some("the timewait socket is gone".into());
            self.push_found(c, now_ns);
        }
        let mut dropped = Vec::new();
        for (t, r) in self.req.iter_mut() {
            if seen_req.contains(t) {
                r.missing_polls = 0;
                continue;
            }
            r.missing_polls += 1;
            // Two polls: the child's tracepoint events may not have been read at the first.
            if r.missing_polls >= MISSES_FOR_GONE {
                dropped.push((*t, r.child_seen));
            }
        }
        for (t, child_seen) in dropped {
            self.req.remove(&t);
            if !child_seen {
                let mut c = Self::change(
                    now_ns,
                    t,
                    Some(TcpState::SynRecv),
                    TcpState::Closed,
                    Source::Sockdiag,
                );
                c.linux = Some("request socket dropped (SYN,ACK retries exhausted or RST)".into());
                self.push(c);
            }
        }
    }

    /// An RST sent to `t` at or after `since`: one addressed to it, else one from the
    /// listener it is connected to (used up, so one RST explains one socket).
    fn rst_to(&mut self, t: Tuple, since: u64) -> Option<(u64, String)> {
        if let Some(r) = self.peer_reason.get(&t).filter(|(ts, _)| *ts >= since) {
            return Some(r.clone());
        }
        let i = self
            .listener_rsts
            .iter()
            .position(|(ts, from, _)| *ts >= since && *from == t.1)?;
        let (ts, _, reason) = self.listener_rsts.remove(i);
        Some((ts, format!("{reason}, from the listener")))
    }

    /// TIME_WAIT -> CLOSED by an RST the peer (on this machine) sent at `ts_ns`.
    fn tw_killed(t: Tuple, ts_ns: u64, reason: String) -> StateChange {
        let mut c = Self::change(
            ts_ns,
            t,
            Some(TcpState::TimeWait),
            TcpState::Closed,
            Source::Tracepoint,
        );
        c.rst = Some(Reset {
            direction: RstDirection::Received,
            reason: Some(reason),
        });
        c.linux = Some(
            "an RST killed the TIME_WAIT socket (TIME-WAIT assassination, RFC 1337; \
             net.ipv4.tcp_rfc1337=0); time of the peer's RST"
                .into(),
        );
        c
    }

    fn on_timewait(&mut self, now_ns: u64, t: Tuple, sub: TcpState, s: &DiagSocket) {
        // TIME_WAIT's timer started at 60 s when the state began.
        let entered = (now_ns + u64::from(s.expires_ms) * 1_000_000).saturating_sub(TIMEWAIT_NS);
        let prev = self
            .tw
            .get(&t)
            .map(|tw| (tw.substate, tw.last_seen_ns, tw.announced));
        let awaiting = self.awaiting.remove(&t);
        let mut announced = prev.is_some_and(|p| p.2);
        if sub == TcpState::TimeWait && !announced {
            match (&awaiting, prev) {
                // Neither the tracepoint's CLOSE read yet nor a FIN_WAIT2 seen: wait for
                // the CLOSE line, which says which state TIME_WAIT followed.
                (None, None | Some((TcpState::TimeWait, _, _))) => {}
                (awaiting, prev) => {
                    let from = awaiting.as_ref().map_or(TcpState::FinWait2, |a| a.from);
                    let was_fw2_socket = prev.is_some_and(|p| p.0 == TcpState::FinWait2);
                    let exact = awaiting.as_ref().filter(|a| {
                        a.from != TcpState::FinWait2
                            || (!was_fw2_socket && entered <= a.ts_ns + SAME_MOMENT_NS)
                    });
                    let mut c = match exact {
                        Some(a) => {
                            let mut c =
                                Self::change(a.ts_ns, t, Some(from), sub, Source::Tracepoint);
                            c.linux = Some(format!(
                                "tracepoint: {from} -> CLOSE; a TIME_WAIT mini-socket took over"
                            ));
                            c
                        }
                        None => {
                            let lower = awaiting
                                .as_ref()
                                .map_or(prev.map_or(0, |p| p.1), |a| a.ts_ns);
                            let (ts, linux) = match self.peer_fin.remove(&t) {
                                Some(fin) => (fin, "the FIN reached the FIN_WAIT2 mini-socket; time of the peer's FIN"),
                                None => (entered, "the FIN reached the FIN_WAIT2 mini-socket"),
                            };
                            // Never before what we saw of FIN_WAIT2 (estimates are coarse).
                            let ts = ts.clamp(lower, now_ns.max(lower));
                            let mut c = Self::change(ts, t, Some(from), sub, Source::Sockdiag);
                            c.linux = Some(linux.into());
                            c
                        }
                    };
                    c.cookie = Some(s.cookie);
                    self.peer_fin.remove(&t);
                    announced = true;
                    if exact.is_some() {
                        self.push(c);
                    } else {
                        self.push_found(c, now_ns);
                    }
                }
            }
        } else if let Some(a) = &awaiting {
            if sub == TcpState::FinWait2 && a.from != TcpState::FinWait2 {
                let mut c = Self::change(a.ts_ns, t, Some(a.from), sub, Source::Tracepoint);
                c.linux = Some(format!(
                    "tracepoint: {} -> CLOSE; a FIN_WAIT2 mini-socket took over",
                    a.from
                ));
                self.push(c);
            }
        }
        self.tw.insert(
            t,
            Tw {
                substate: sub,
                last_seen_ns: now_ns,
                expires_ms: s.expires_ms,
                announced,
                misses: 0,
            },
        );
    }

    /// Feeds the snapshot taken when watching begins (filtered): each socket is
    /// reported once, with no `from`.
    pub fn on_snapshot(&mut self, now_ns: u64, sockets: &[DiagSocket]) {
        for s in sockets {
            let Some(st) = TcpState::from_linux(u32::from(s.state)) else {
                continue;
            };
            let t = (s.local, s.remote);
            if s.is_timewait() {
                let announced = st == TcpState::TimeWait;
                self.tw.insert(
                    t,
                    Tw {
                        substate: st,
                        last_seen_ns: now_ns,
                        expires_ms: s.expires_ms,
                        announced,
                        misses: 0,
                    },
                );
            } else if st == TcpState::SynRecv {
                self.req.insert(
                    t,
                    Req {
                        missing_polls: 0,
                        child_seen: false,
                    },
                );
            }
            self.fallback.insert(s.cookie, (t, st));
            let mut c = Self::change(now_ns, t, None, st, Source::Sockdiag);
            c.cookie = Some(s.cookie);
            self.push(c);
        }
    }

    /// Feeds a poll of every state (the fallback without tracepoints): changes are
    /// found by comparing with the previous poll, socket by socket (cookie).
    pub fn on_full_poll(&mut self, now_ns: u64, sockets: &[DiagSocket]) {
        // Disappearances first: a socket replaced by another prints in that order.
        let seen: HashSet<u64> = sockets.iter().map(|s| s.cookie).collect();
        let mut gone = Vec::new();
        for cookie in self.fallback.keys() {
            if seen.contains(cookie) {
                self.fallback_misses.remove(cookie);
            } else {
                let misses = self.fallback_misses.entry(*cookie).or_default();
                *misses += 1;
                if *misses >= MISSES_FOR_GONE {
                    gone.push(*cookie);
                }
            }
        }
        for cookie in gone {
            self.fallback_misses.remove(&cookie);
            if let Some((t, st)) = self.fallback.remove(&cookie) {
                let mut c = Self::change(now_ns, t, Some(st), TcpState::Closed, Source::Sockdiag);
                c.cookie = Some(cookie);
                self.push(c);
            }
        }
        for s in sockets {
            let Some(st) = TcpState::from_linux(u32::from(s.state)) else {
                continue;
            };
            let t = (s.local, s.remote);
            let prev = self.fallback.insert(s.cookie, (t, st));
            let from = match prev {
                Some((_, p)) if p == st => continue,
                Some((_, p)) => Some(p),
                None => None,
            };
            let mut c = Self::change(now_ns, t, from, st, Source::Sockdiag);
            c.cookie = Some(s.cookie);
            self.push(c);
        }
    }

    /// Releases, in time order, the changes older than `now_ns - hold`, with RSTs,
    /// retransmissions, cookies and time in the previous state attached.
    pub fn release(&mut self, now_ns: u64) -> Vec<Released> {
        // Nothing at or after a CLOSE that still waits for its poll leaves before it.
        let barrier = self
            .awaiting
            .values()
            .map(|a| a.ts_ns)
            .min()
            .unwrap_or(u64::MAX);
        let n = self
            .pending
            .iter()
            .take_while(|(c, release_at)| *release_at <= now_ns && c.ts_ns < barrier)
            .count();
        // A SYN_SENT still without its port stays until the connection's next event
        // names it (its SYN may be retransmitted for minutes) without holding up others;
        // it then prints late, with its own time.
        let (waiting, ready): (Vec<_>, Vec<_>) = self
            .pending
            .drain(..n)
            .partition(|(c, _)| Self::unresolved(c) && now_ns != u64::MAX);
        for (i, w) in waiting.into_iter().enumerate() {
            self.pending.insert(i, w);
        }
        let out: Vec<StateChange> = ready.into_iter().map(|(c, _)| c).collect();
        let out = out.into_iter().map(|c| self.finish(c)).collect();
        // Forget RST facts nobody claimed (e.g. NO_SOCKET answers) after a second.
        let horizon = now_ns.saturating_sub(1_000_000_000);
        self.resets.retain(|_, (ts, _)| *ts >= horizon);
        self.peer_reason.retain(|_, (ts, _)| *ts >= horizon);
        self.listener_rsts.retain(|(ts, _, _)| *ts >= horizon);
        out
    }

    /// Releases everything, however recent (at exit).
    pub fn release_all(&mut self) -> Vec<Released> {
        for (t, a) in std::mem::take(&mut self.awaiting) {
            let mut c = Self::change(
                a.ts_ns,
                t,
                Some(a.from),
                TcpState::Closed,
                Source::Tracepoint,
            );
            c.linux = Some("watching ended before a poll could tell TIME_WAIT from CLOSED".into());
            self.push(c);
        }
        self.release(u64::MAX)
    }

    fn finish(&mut self, mut c: StateChange) -> Released {
        let t = (c.local, c.remote);
        if c.to == TcpState::Closed && c.rst.is_none() {
            c.rst = self.resets.remove(&t).map(|(_, r)| r);
        }
        let conn = self.conns.get(&t);
        let in_prev_ns = conn
            .filter(|k| Some(k.state) == c.from && k.since_known)
            .map(|k| c.ts_ns.saturating_sub(k.since_ns));
        if let Some(k) = conn {
            c.retransmits = k.retransmits;
            if c.cookie.is_none() {
                c.cookie = k.cookie;
            }
        }
        if c.to == TcpState::Closed {
            self.conns.remove(&t);
        } else {
            self.conns.insert(
                t,
                Conn {
                    state: c.to,
                    since_ns: c.ts_ns,
                    since_known: c.from.is_some(),
                    cookie: c.cookie,
                    retransmits: 0,
                },
            );
        }
        Released {
            change: c,
            in_prev_ns,
        }
    }
}

#[cfg(test)]
#[path = "correlate_tests.rs"]
mod tests;
