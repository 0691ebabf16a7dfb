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

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
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
/// How long RST facts are kept to explain a vanished socket.
const RST_MEMORY_NS: u64 = 1_000_000_000;
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

#[derive(Debug, Clone, Copy)]
struct Tw {
    substate: TcpState,
    /// When a poll first showed it in `substate`.
    first_seen_ns: u64,
    last_seen_ns: u64,
    /// What that last poll showed.
    seen: DiagSocket,
    /// Whether its TIME_WAIT was reported (or it was in TIME_WAIT at the snapshot).
    announced: bool,
    /// Whether the tracepoint's CLOSE of its full socket was read (or it was there at
    /// the snapshot). A poll can find a mini-socket while the trace lines of its
    /// connection are still unread in the ring (a lagging reader): until they are read,
    /// the poll only learns, and announces nothing, and a `SYN_SENT` of the same tuple
    /// read meanwhile is this connection's own, not a new one recycling it.
    traced: bool,
    /// Whether a poll ever showed it as a FIN_WAIT2 mini-socket: its TIME_WAIT then
    /// began when the peer's FIN reached it, not at the CLOSE.
    was_fw2: bool,
    /// When the tracepoint's CLOSE handed its full socket over, if read: nothing of the
    /// mini-socket began before.
    handed_ns: Option<u64>,
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
    /// Keyed by (time, arrival): a change found late, or redated, goes in its place in
    /// O(log n) however many are held (a lagging reader holds hundreds of thousands).
    pending: BTreeMap<(u64, u64), (StateChange, u64)>,
    /// Arrival counter: equal times keep their arrival order.
    arrivals: u64,
    /// Time of the held `CLOSE_WAIT -> LAST_ACK` per tuple (the FIN a local peer sent).
    held_last_ack: HashMap<Tuple, u64>,
    /// `CLOSE -> SYN_SENT` changes still without their port, oldest first, by
    /// (local address with port 0, remote): kept apart so that naming the port is a
    /// hash lookup, not a search through everything held.
    syn_sent: HashMap<Tuple, VecDeque<(StateChange, u64)>>,
    /// Tuples with a poll-found `FIN_WAIT2 -> TIME_WAIT` held, which the local peer's
    /// FIN may still date better: its time, and the earliest time it may be given
    /// (the CLOSE it followed).
    found_tw: HashMap<Tuple, (u64, u64)>,
    conns: HashMap<Tuple, Conn>,
    awaiting: HashMap<Tuple, Awaiting>,
    tw: HashMap<Tuple, Tw>,
    req: HashMap<Tuple, Req>,
    resets: HashMap<Tuple, (u64, Reset)>,
    peer_reason: HashMap<Tuple, (u64, String)>,
    /// When a child's `LISTEN -> SYN_RECV` was traced, by tuple (kept a second): the
    /// tracepoint fires just before the child takes its request socket's place in the
    /// hash table, so a poll read after it can still show that request socket.
    children: HashMap<Tuple, u64>,
    fallback: HashMap<u64, (Tuple, TcpState)>,
    fallback_misses: HashMap<u64, u8>,
    /// RSTs a listener sent (time, listener address, reason): the tracepoint then names
    /// the listener's addresses, not the packet's, so the peer is unknown.
    listener_rsts: Vec<(u64, SocketAddr, String)>,
    /// When a peer on this machine sent the FIN a FIN_WAIT2 mini-socket waits for,
    /// keyed by the mini-socket's tuple.
    peer_fin: HashMap<Tuple, u64>,
    hold_ns: u64,
    /// Until when an RST seen may have killed a TIME_WAIT socket (all are polled fast).
    rst_until: u64,
    /// When [`Correlator::release`] next forgets old RST facts and children.
    next_forget: u64,
    /// Events the kernel said it lost (`[LOST n EVENTS]`).
    pub lost: u64,
}

impl Correlator {
    /// A correlator that holds changes `hold_ns` before release.
    pub fn new(hold_ns: u64) -> Correlator {
        Correlator {
            pending: BTreeMap::new(),
            arrivals: 0,
            held_last_ack: HashMap::new(),
            syn_sent: HashMap::new(),
            found_tw: HashMap::new(),
            conns: HashMap::new(),
            awaiting: HashMap::new(),
            tw: HashMap::new(),
            req: HashMap::new(),
            resets: HashMap::new(),
            peer_reason: HashMap::new(),
            children: HashMap::new(),
            fallback: HashMap::new(),
            fallback_misses: HashMap::new(),
            listener_rsts: Vec::new(),
            peer_fin: HashMap::new(),
            hold_ns,
            rst_until: 0,
            next_forget: 0,
            lost: 0,
        }
    }

    /// Live sockets as last released.
    pub fn conns(&self) -> &HashMap<Tuple, Conn> {
        &self.conns
    }

    /// True when mini-sockets (timewait or request sockets) are followed by polls.
    pub fn tracks_minis(&self) -> bool {
        !self.tw.is_empty() || !self.req.is_empty()
    }

    /// How many mini-sockets are followed.
    pub fn tracked_minis(&self) -> usize {
        self.tw.len() + self.req.len()
    }

    /// The request sockets followed (a dump of request sockets is a poll of these).
    pub fn request_tuples(&self) -> HashSet<Tuple> {
        self.req.keys().copied().collect()
    }

    /// True when a tracepoint CLOSE waits for a sock_diag poll to be understood.
    pub fn needs_mini_poll(&self) -> bool {
        !self.awaiting.is_empty() || !self.peer_fin.is_empty()
    }

    /// The earliest time a held change may be released (a SYN_SENT still without its
    /// port excepted: it waits for an event, not for time).
    /// Changes behind a CLOSE that waits for its poll are not counted: the poll, not
    /// time, frees them.
    pub fn next_release(&self) -> Option<u64> {
        let barrier = self.barrier();
        // Release takes a prefix in time order, so the first change decides.
        let (c, at) = self.pending.first_key_value()?.1;
        (c.ts_ns < barrier).then_some(*at)
    }

    /// The time of the oldest tracepoint CLOSE still waiting for its poll.
    fn barrier(&self) -> u64 {
        self.awaiting
            .values()
            .map(|a| a.ts_ns)
            .min()
            .unwrap_or(u64::MAX)
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
        if Self::unresolved(&c) {
            let key = (c.local, c.remote);
            self.syn_sent
                .entry(key)
                .or_default()
                .push_back((c, release_at));
            return;
        }
        if c.to == TcpState::LastAck {
            self.held_last_ack.insert((c.local, c.remote), c.ts_ns);
        }
        self.arrivals += 1;
        self.pending
            .insert((c.ts_ns, self.arrivals), (c, release_at));
    }

    /// The time of the local peer's FIN to `t`, if its `LAST_ACK` is still held.
    fn held_peer_fin(&self, t: Tuple) -> Option<u64> {
        self.held_last_ack.get(&(t.1, t.0)).copied()
    }

    /// `from -> TIME_WAIT` at `ts_ns`, the tracepoint's CLOSE of `t`'s full socket: a
    /// TIME_WAIT mini-socket took over. `how` adds how we know, when not by a poll.
    fn handed_to_time_wait(t: Tuple, from: TcpState, ts_ns: u64, how: &str) -> StateChange {
        let mut c = Self::change(ts_ns, t, Some(from), TcpState::TimeWait, Source::Tracepoint);
        c.linux = Some(format!(
            "tracepoint: {from} -> CLOSE; a TIME_WAIT mini-socket took over{how}"
        ));
        c
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
                if from == TcpState::Closed && to == TcpState::SynSent && local.port() != 0 {
                    self.connect_reused_timewait(t, ts_ns);
                }
                if from == TcpState::Listen && to == TcpState::SynRecv {
                    self.syn_reused_timewait(t, ts_ns);
                    if let Some(r) = self.req.get_mut(&t) {
                        // Already reported from the request socket.
                        r.child_seen = true;
                        return;
                    }
                    self.children.insert(t, ts_ns);
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
                        // A poll already showed its mini-socket (the reader lags): what
                        // it saw is understood now, whatever became of it since.
                        if let Some(tw) = self.tw.get(&t).filter(|tw| !tw.traced).copied() {
                            self.on_timewait(tw.last_seen_ns.into(), t, tw.substate, &tw.seen);
                        }
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
                self.rst_until = self.rst_until.max(ts_ns.saturating_add(RST_MEMORY_NS));
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
                self.rst_until = self.rst_until.max(ts_ns.saturating_add(RST_MEMORY_NS));
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
        let Some((found_ts, lower)) = self.found_tw.remove(&t) else {
            return;
        };
        // Held changes are in time order: start at its time.
        let Some(key) = self
            .pending
            .range((found_ts, 0)..=(found_ts, u64::MAX))
            .find(|(_, (c, _))| {
                c.ts_ns == found_ts
                    && c.local == t.0
                    && c.remote == t.1
                    && c.from == Some(TcpState::FinWait2)
                    && c.to == TcpState::TimeWait
                    && c.source == Source::Sockdiag
            })
            .map(|(k, _)| *k)
        else {
            return;
        };
        let Some((mut c, release_at)) = self.pending.remove(&key) else {
            return;
        };
        // The found change was dated no earlier than the socket's CLOSE; keep that bound.
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
        let held = self.syn_sent.get_mut(&(zero, t.1));
        if let Some((mut c, release_at)) = held.and_then(VecDeque::pop_front) {
            if self
                .syn_sent
                .get(&(zero, t.1))
                .is_some_and(VecDeque::is_empty)
            {
                self.syn_sent.remove(&(zero, t.1));
            }
            c.local = t.0;
            syn_ts = c.ts_ns;
            self.insert(c, release_at);
        } else if let Some(conn) = self.conns.remove(&(zero, t.1)) {
            self.conns.insert(t, conn);
        }
        self.connect_reused_timewait(t, syn_ts);
    }

    /// A connect() that reuses the tuple of a TIME_WAIT socket (`net.ipv4.tcp_tw_reuse`)
    /// ends that TIME_WAIT just before its `CLOSE -> SYN_SENT` at `syn_ts`: called when
    /// the SYN_SENT is read with its port (a socket bound before connect()) or when a
    /// later event names the port.
    fn connect_reused_timewait(&mut self, t: Tuple, syn_ts: u64) {
        self.new_life(
            t,
            syn_ts,
            "recycled by a new connect() to the same peer (net.ipv4.tcp_tw_reuse)",
        );
    }

    /// A SYN to a server-side TIME_WAIT socket may open a new connection on the same
    /// tuple (the timewait socket accepts it and goes, RFC 6191): the child's
    /// `LISTEN -> SYN_RECV` at `ts_ns` ends that TIME_WAIT just before.
    fn syn_reused_timewait(&mut self, t: Tuple, ts_ns: u64) {
        self.new_life(
            t,
            ts_ns,
            "recycled by a new SYN to the same tuple (RFC 6191)",
        );
    }

    /// A new life of tuple `t` begins at `ts_ns`: the TIME_WAIT of the earlier socket,
    /// if one was there, ends just before (`why`), and nothing learnt about the earlier
    /// socket (a peer's FIN, a change still to be redated) applies to the new one.
    fn new_life(&mut self, t: Tuple, ts_ns: u64, why: &str) {
        self.peer_fin.remove(&t);
        self.found_tw.remove(&t);
        let end = |from| {
            let mut c = Self::change(
                ts_ns.saturating_sub(1),
                t,
                Some(from),
                TcpState::Closed,
                Source::Tracepoint,
            );
            c.linux = Some(why.to_string());
            c
        };
        if let Some(a) = self.awaiting.remove(&t) {
            // The earlier socket's CLOSE still waited for a poll (the reader lags): a
            // timewait socket took over, and was recycled before any poll saw it. Only
            // a TIME_WAIT one can be: the kernel never reuses a FIN_WAIT2 mini-socket.
            self.tw.remove(&t);
            self.push(Self::handed_to_time_wait(
                t,
                a.from,
                a.ts_ns,
                " (no poll saw it before the next connection recycled it)",
            ));
            self.push(end(TcpState::TimeWait));
            return;
        }
        if let Some(tw) = self.take_earlier_life(t) {
            if tw.substate == TcpState::TimeWait && tw.announced {
                self.push(end(TcpState::TimeWait));
            }
        }
    }

    /// Removes and returns the timewait socket of `t` when it belongs to an earlier
    /// life of the tuple, one whose CLOSE was read. One found by a poll before its
    /// CLOSE line is read belongs to the connection whose lines are being read now.
    fn take_earlier_life(&mut self, t: Tuple) -> Option<Tw> {
        if !self.tw.get(&t)?.traced {
            return None;
        }
        self.tw.remove(&t)
    }

    /// Releases, in time order, the changes older than `now_ns - hold`, with RSTs,
    /// retransmissions, cookies and time in the previous state attached.
    pub fn release(&mut self, now_ns: u64) -> Vec<Released> {
        // Nothing at or after a CLOSE that still waits for its poll leaves before it.
        let barrier = self.barrier();
        // A SYN_SENT still without its port is not here but in `syn_sent` until the
        // connection's next event names it (its SYN may be retransmitted for minutes):
        // it holds up nothing, and prints late, with its own time.
        let mut out: Vec<StateChange> = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            let (c, release_at) = entry.get();
            if *release_at > now_ns || c.ts_ns >= barrier {
                break;
            }
            out.push(entry.remove().0);
        }
        let out = out.into_iter().map(|c| self.finish(c)).collect();
        // Forget RST facts nobody claimed (e.g. NO_SOCKET answers) after a second, and
        // traced children. Every tenth of a second: under churn these maps hold
        // thousands, and a release runs hundreds of times a second.
        if now_ns >= self.next_forget {
            self.next_forget = now_ns.saturating_add(RST_MEMORY_NS / 10);
            let horizon = now_ns.saturating_sub(RST_MEMORY_NS);
            self.resets.retain(|_, (ts, _)| *ts >= horizon);
            self.peer_reason.retain(|_, (ts, _)| *ts >= horizon);
            self.children.retain(|_, ts| *ts >= horizon);
            self.listener_rsts.retain(|(ts, _, _)| *ts >= horizon);
        }
        out
    }

    /// Releases everything, however recent (at exit).
    pub fn release_all(&mut self) -> Vec<Released> {
        for (_, held) in std::mem::take(&mut self.syn_sent) {
            for (c, _) in held {
                self.arrivals += 1;
                self.pending.insert((c.ts_ns, self.arrivals), (c, 0));
            }
        }
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
        if c.to == TcpState::LastAck && self.held_last_ack.get(&t) == Some(&c.ts_ns) {
            self.held_last_ack.remove(&t);
        }
        if c.source == Source::Sockdiag
            && c.to == TcpState::TimeWait
            && self.found_tw.get(&t).is_some_and(|f| f.0 == c.ts_ns)
        {
            self.found_tw.remove(&t);
        }
        if c.to == TcpState::Closed && c.rst.is_none() {
            c.rst = self.resets.remove(&t).map(|(_, r)| r);
        }
        // A socket's first change begins a new life of its tuple (tcp_tw_reuse, RFC 6191):
        // nothing of an earlier socket with the same tuple (cookie, retransmissions,
        // state) carries over.
        let opens = matches!(
            (c.from, c.to),
            (Some(TcpState::Closed), TcpState::SynSent)
                | (Some(TcpState::Listen), TcpState::SynRecv)
        );
        if opens {
            self.conns.remove(&t);
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

mod polls;
pub use polls::PollSpan;
#[cfg(test)]
mod tests;
