//! The sock_diag side of the correlator: the snapshot, the polls of mini-sockets
//! (timewait and request sockets) that tracepoints cannot see, and the fallback that
//! finds every change by comparing polls.

use std::collections::HashSet;

use tcplab_core::event::{Reset, RstDirection, Source, StateChange};
use tcplab_core::state::TcpState;

use super::{Correlator, Req, Tuple, Tw, MISSES_FOR_GONE, SAME_MOMENT_NS, TIMEWAIT_NS};
use crate::probe::sockdiag::DiagSocket;

/// When a poll looked. A dump is not atomic: what it shows was so at some moment
/// between `start_ns` and `end_ns`. So a state it shows began before the end and lasted
/// at least until the start: lower bounds take the start, upper bounds the end. Feed a
/// poll only after every trace line up to its end is read
/// ([`crate::probe::tracefs::Instance::catch_up`]): those lines led to what it saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollSpan {
    /// When the poll began (CLOCK_MONOTONIC ns).
    pub start_ns: u64,
    /// When its answer was complete.
    pub end_ns: u64,
}

impl From<u64> for PollSpan {
    /// A poll at one instant (a poll's answer taken again, and tests).
    fn from(ns: u64) -> Self {
        PollSpan {
            start_ns: ns,
            end_ns: ns,
        }
    }
}

impl Correlator {
    /// Feeds a poll of the mini-socket states ([`crate::probe::sockdiag::MINI_STATES`]),
    /// already filtered, made during `span`.
    pub fn on_mini_poll(&mut self, span: impl Into<PollSpan>, sockets: &[DiagSocket]) {
        self.mini_poll(span.into(), sockets, None);
    }

    /// Feeds the answers of exact lookups ([`crate::probe::sockdiag::SockDiag::lookup`])
    /// of the tuples in `looked` (see [`Correlator::poll_targets`]), made during `span`:
    /// only those tuples count as missing when not `found`.
    pub fn on_lookups(&mut self, span: PollSpan, looked: &HashSet<Tuple>, found: &[DiagSocket]) {
        self.mini_poll(span, found, Some(looked));
    }

    /// The tuples a poll must look at now: every socket that waits for a poll to be
    /// understood (a CLOSE, a peer's FIN), FIN_WAIT2 mini-sockets (the peer's FIN moves
    /// them), request sockets, TIME_WAIT sockets due to expire or already missed once,
    /// and all TIME_WAIT sockets while an RST may have killed one. The others (TIME_WAIT
    /// sockets with time to live) are left to the periodic full dump.
    /// With `all` false, only the urgent ones (the CLOSEs and FINs), without going
    /// through every TIME_WAIT socket known.
    pub fn poll_targets(&self, now_ns: u64, all: bool) -> HashSet<Tuple> {
        let rst_window = now_ns < self.rst_until;
        let mut out: HashSet<Tuple> = self.awaiting.keys().copied().collect();
        out.extend(self.peer_fin.keys().copied());
        if !all {
            return out;
        }
        out.extend(self.req.keys().copied());
        out.extend(self.tw.iter().filter_map(|(t, tw)| {
            let expiry = tw.last_seen_ns + u64::from(tw.seen.expires_ms) * 1_000_000;
            // A FIN_WAIT2 mini-socket waits for the peer's FIN, maybe for a minute. Its
            // TIME_WAIT is dated by the new timer, not by the poll, so the look may come
            // later as it ages: every eighth of its age, at most every second.
            let fw2_due = tw.substate == TcpState::FinWait2 && {
                let age = now_ns.saturating_sub(tw.first_seen_ns);
                now_ns.saturating_sub(tw.last_seen_ns) >= (age / 8).min(1_000_000_000)
            };
            let hot = rst_window || fw2_due || tw.misses > 0 || expiry <= now_ns;
            hot.then_some(*t)
        }));
        out
    }

    fn mini_poll(
        &mut self,
        span: PollSpan,
        sockets: &[DiagSocket],
        scope: Option<&HashSet<Tuple>>,
    ) {
        // What is concluded from this poll is dated no later than its end.
        let now_ns = span.end_ns;
        let in_scope = |t: &Tuple| scope.is_none_or(|s| s.contains(t));
        let mut seen_tw = HashSet::new();
        let mut seen_req = HashSet::new();
        for s in sockets {
            let t = (s.local, s.remote);
            let Some(st) = TcpState::from_linux(u32::from(s.state)) else {
                continue;
            };
            if s.is_timewait() {
                seen_tw.insert(t);
                self.on_timewait(span, t, st, s);
            } else if st == TcpState::SynRecv && s.inode == 0 {
                // A request socket (sock_diag shows it as SYN_RECV, without a file). A
                // full socket in SYN_RECV with a file is a simultaneous open's, and its
                // tracepoints tell its story.
                seen_req.insert(t);
                let known = self.req.contains_key(&t)
                    || self.conns.contains_key(&t)
                    || self.children.contains_key(&t);
                if !known {
                    self.req.insert(
                        t,
                        Req {
                            missing_polls: 0,
                            child_seen: false,
                        },
                    );
                    let mut c = Self::change(
                        Self::request_began(now_ns, s),
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
        for (t, a) in self.awaiting.iter_mut().filter(|(t, _)| in_scope(t)) {
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
                self.push(Self::handed_to_time_wait(t, a.from, a.ts_ns, ""));
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
        // Only the tuples looked at: a lookup poll must not cost a walk of every
        // TIME_WAIT socket known (tens of thousands under churn).
        let looked: Vec<Tuple> = match scope {
            Some(s) => s
                .iter()
                .filter(|t| self.tw.contains_key(t))
                .copied()
                .collect(),
            None => self.tw.keys().copied().collect(),
        };
        for t in &looked {
            let Some(tw) = self.tw.get_mut(t) else {
                continue;
            };
            if seen_tw.contains(t) {
                tw.misses = 0;
            } else if !tw.traced && now_ns.saturating_sub(tw.first_seen_ns) < TIMEWAIT_NS {
                // Kept until its CLOSE line is read (recycled or killed meanwhile, it
                // was still there): that line turns what the poll saw into changes.
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
            if !tw.traced {
                // No CLOSE line for it in a whole TIME_WAIT (events lost): nothing to say.
                continue;
            }
            if tw.substate == TcpState::TimeWait && tw.announced {
                if let Some((rst_ts, reason)) =
                    self.rst_to(t, tw.last_seen_ns.saturating_sub(1_000_000_000))
                {
                    self.push(Self::tw_killed(t, rst_ts, reason));
                    continue;
                }
            }
            let expiry = tw.last_seen_ns + u64::from(tw.seen.expires_ms) * 1_000_000;
            let ts = expiry.clamp(tw.last_seen_ns, now_ns);
            let mut c = Self::change(ts, t, Some(tw.substate), TcpState::Closed, Source::Sockdiag);
            c.linux = Some("the timewait socket is gone".into());
            self.push_found(c, now_ns);
        }
        let mut dropped = Vec::new();
        for (t, r) in self.req.iter_mut().filter(|(t, _)| in_scope(t)) {
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

    /// When a request socket found by a poll at `now_ns` began. Its SYN,ACK timer starts
    /// at TCP_TIMEOUT_INIT (1 s) and doubles at each retransmission, so after `k` of them
    /// it expires (2^(k+1) - 1) s after the SYN: the time left dates the SYN to the
    /// jiffy, however late the poll (below TCP_RTO_MAX, and unless a duplicate SYN made
    /// an extra SYN,ACK: then the estimate is early, never before the poll's reach).
    fn request_began(now_ns: u64, s: &DiagSocket) -> u64 {
        const TIMEOUT_INIT_MS: u64 = 1000;
        if s.timer != 1 || s.retrans > 5 {
            return now_ns;
        }
        let total_ms = TIMEOUT_INIT_MS * ((2u64 << s.retrans) - 1);
        let expires_ms = u64::from(s.expires_ms);
        if expires_ms > total_ms {
            return now_ns;
        }
        now_ns.saturating_sub((total_ms - expires_ms) * 1_000_000)
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

    pub(super) fn on_timewait(&mut self, span: PollSpan, t: Tuple, sub: TcpState, s: &DiagSocket) {
        let now_ns = span.end_ns;
        // TIME_WAIT's timer started at 60 s when the state began.
        let entered = (now_ns + u64::from(s.expires_ms) * 1_000_000).saturating_sub(TIMEWAIT_NS);
        let prev = self.tw.get(&t).copied();
        let awaiting = self.awaiting.remove(&t);
        let traced = awaiting.is_some() || prev.is_some_and(|p| p.traced);
        let handed_ns = awaiting
            .as_ref()
            .map(|a| a.ts_ns)
            .or(prev.and_then(|p| p.handed_ns));
        let mut announced = prev.is_some_and(|p| p.announced);
        // Until the CLOSE line is read, a poll only learns: that line says which state
        // TIME_WAIT followed, and the lines before it are this connection's.
        if sub == TcpState::TimeWait && !announced && traced {
            let from = awaiting.as_ref().map_or(TcpState::FinWait2, |a| a.from);
            let was_fw2_socket = prev.is_some_and(|p| p.was_fw2);
            let exact = awaiting.as_ref().filter(|a| {
                a.from != TcpState::FinWait2
                    || (!was_fw2_socket && entered <= a.ts_ns + SAME_MOMENT_NS)
            });
            let mut found_lower = 0;
            let mut c = match exact {
                Some(a) => Self::handed_to_time_wait(t, from, a.ts_ns, ""),
                None => {
                    // Not before the CLOSE, nor before the last poll that showed FIN_WAIT2.
                    let fw2_seen = prev
                        .filter(|p| p.substate == TcpState::FinWait2)
                        .map_or(0, |p| p.last_seen_ns);
                    let lower = handed_ns.unwrap_or(0).max(fw2_seen);
                    // The local peer's FIN, if its LAST_ACK is still held here.
                    let held_fin = self.held_peer_fin(t);
                    let (ts, linux) = match self.peer_fin.remove(&t).or(held_fin) {
                        Some(fin) => (
                            fin,
                            "the FIN reached the FIN_WAIT2 mini-socket; time of the peer's FIN",
                        ),
                        None => (entered, "the FIN reached the FIN_WAIT2 mini-socket"),
                    };
                    // Never before what we saw of FIN_WAIT2 (estimates are coarse).
                    let ts = ts.clamp(lower, now_ns.max(lower));
                    found_lower = lower;
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
                if c.from == Some(TcpState::FinWait2) && c.to == TcpState::TimeWait {
                    self.found_tw.insert(t, (c.ts_ns, found_lower));
                }
                self.push_found(c, now_ns);
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
                // In `sub` at some moment after the poll's start: what follows it (a
                // TIME_WAIT after this FIN_WAIT2) began after that start.
                first_seen_ns: prev
                    .filter(|p| p.substate == sub)
                    .map_or(span.start_ns, |p| p.first_seen_ns),
                last_seen_ns: span.start_ns,
                seen: *s,
                announced,
                traced,
                was_fw2: sub == TcpState::FinWait2 || prev.is_some_and(|p| p.was_fw2),
                handed_ns,
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
                self.tw.insert(
                    t,
                    Tw {
                        substate: st,
                        first_seen_ns: now_ns,
                        last_seen_ns: now_ns,
                        seen: *s,
                        announced: st == TcpState::TimeWait,
                        traced: true,
                        was_fw2: st == TcpState::FinWait2,
                        handed_ns: None,
                        misses: 0,
                    },
                );
            } else if st == TcpState::SynRecv && s.inode == 0 {
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
}
