//! The impairable wire's decision engine, sans-IO.
//!
//! The `tcplab` binary copies packets between two TUN devices, one in the client host's
//! namespace and one in the server host's; every packet goes through a [`Wire`], which
//! decides its fate: forward now, drop, hold (a scenario rule), deliver later (delay,
//! reorder) or send twice. Time is a parameter (ns of CLOCK_MONOTONIC); nothing here
//! reads a clock or touches a device, so every rule is tested from bytes.
//!
//! Driving it (quinn-proto's shape): call [`Wire::handle`] for each packet read,
//! [`Wire::handle_timeout`] when [`Wire::next_timeout`] has passed, and write out every
//! [`Transmit`] from [`Wire::poll_transmit`]. Every decision is recorded as a
//! [`WireEvent`] with the packet's bytes, so the timeline can draw a lost segment as
//! lost and a held one as held; [`Wire::finish`] ends a run and hands them over.
//!
//! Random choices (loss, reorder, duplication) come from one seeded generator per
//! direction, and each TCP segment draws the same numbers whatever happens to it, so
//! the n-th segment of a direction meets the same fate in every run with the same seed,
//! however the two directions interleave.

mod packet;
mod rng;
mod spec;

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

pub use packet::{flags, tcp_summary, TcpSummary};
pub use rng::SplitMix64;
pub use spec::{Rules, SpecError, DEFAULT_SEED, WORDS};

/// How long a segment picked for reordering waits for the next one of its direction
/// before it goes anyway: long enough for a bulk sender, short next to any RTO.
pub const REORDER_WAIT_NS: u64 = 50_000_000;

/// Which way a packet travels on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the client host to the server host.
    ClientToServer,
    /// From the server host to the client host.
    ServerToClient,
}

impl Direction {
    /// 0 for client to server, 1 for server to client.
    pub fn index(self) -> usize {
        match self {
            Direction::ClientToServer => 0,
            Direction::ServerToClient => 1,
        }
    }

    /// The other way.
    pub fn reverse(self) -> Direction {
        match self {
            Direction::ClientToServer => Direction::ServerToClient,
            Direction::ServerToClient => Direction::ClientToServer,
        }
    }
}

/// Why the wire dropped a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum DropReason {
    /// Random loss (`loss=P%`).
    Loss,
    /// The n-th segment of its direction (`drop=N`).
    Nth {
        /// Which segment of its direction, from 1.
        n: u64,
    },
    /// The client's handshake-completing ACK (`drop-third-ack`).
    ThirdAck,
    /// After the cut (`cut=N`).
    Cut,
    /// A retransmission of a segment the wire is already holding.
    HeldDuplicate,
}

/// The scenario rule that holds a packet back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldRule {
    /// `hold-first-fin`: until a FIN exists in each direction.
    FirstFin,
    /// `hold-syn`: until a SYN exists in each direction.
    Syn,
}

/// What the wire did with a packet, at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// Passed on at once.
    Forward,
    /// Lost on purpose; it never reaches the other host.
    Drop {
        /// Which rule dropped it.
        #[serde(flatten)]
        reason: DropReason,
    },
    /// Kept back by a scenario rule. When the rule lets go, a [`Action::Release`]
    /// follows, or a [`Action::Delay`] / [`Action::Reorder`] when the packet goes on
    /// into the delay.
    Hold {
        /// The rule.
        rule: HoldRule,
    },
    /// A held packet let go and passed on now.
    Release,
    /// Kept for `delay=`; an [`Action::Deliver`] follows at `until_ns`.
    Delay {
        /// When it will be passed on.
        until_ns: u64,
    },
    /// Kept back behind the next packet of its direction (`reorder=`), at most until
    /// `until_ns`; an [`Action::Deliver`] follows.
    Reorder {
        /// The latest moment it will be passed on.
        until_ns: u64,
    },
    /// A delayed or reordered packet passed on now.
    Deliver,
    /// A second copy made (`dup=`); the copy then travels like the original.
    Duplicate,
    /// Still held or delayed when the wire stopped: never delivered.
    Discard,
}

impl Action {
    /// True when the packet (or a copy) is handed to the other host at this moment:
    /// forward, release from a hold, or delivery after a delay. The first event of a
    /// packet number is always its arrival; a duplicated packet departs twice.
    pub fn is_departure(&self) -> bool {
        matches!(self, Action::Forward | Action::Release | Action::Deliver)
    }
}

/// One decision of the wire about one packet: what the timeline draws.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEvent {
    /// When, in ns of CLOCK_MONOTONIC.
    pub ts_ns: u64,
    /// The packet's number in the order it reached the wire, from 1: every event about
    /// one packet (and its duplicate) carries the same number, and the first of them
    /// says what happened on arrival.
    pub packet: u64,
    /// Which way the packet travels.
    pub dir: Direction,
    /// What happened to it.
    pub action: Action,
    /// The packet (bare IPv4 or IPv6, as read from the TUN device).
    pub bytes: Vec<u8>,
}

impl WireEvent {
    /// The TCP segment this decision is about, in the timeline's terms, stamped with
    /// the decision's time; `None` for a packet that is not TCP.
    pub fn segment(&self) -> Option<crate::timeline::Segment> {
        let packet = crate::wire::decode(crate::wire::LINKTYPE_RAW, &self.bytes);
        crate::timeline::Segment::from_packet(self.ts_ns, &packet)
    }

    /// True when this decision means the packet never reaches the other host.
    pub fn is_loss(&self) -> bool {
        matches!(self.action, Action::Drop { .. } | Action::Discard)
    }
}

/// A packet to write now to the device on the far side of `dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Which way it travels: `ClientToServer` goes to the server host's device.
    pub dir: Direction,
    /// The packet.
    pub bytes: Vec<u8>,
}

/// A packet inside the wire: its number, its direction, its bytes.
#[derive(Debug, Clone)]
struct Pkt {
    id: u64,
    dir: Direction,
    bytes: Vec<u8>,
}

/// A packet waiting in the wire for its time (delay or reorder).
#[derive(Debug)]
struct Queued {
    at_ns: u64,
    order: u64,
    pkt: Pkt,
    reordered: bool,
}

/// One "hold until it exists in each direction" rule.
#[derive(Debug, Default)]
struct Holder {
    enabled: bool,
    done: bool,
    seen: [bool; 2],
    held: [Vec<Pkt>; 2],
}

/// What a [`Holder`] says about a packet.
enum HoldStep {
    Pass,
    Hold,
    DropDuplicate,
    /// The rule is satisfied: release what the other direction holds, then pass this.
    ReleaseOther(Vec<Pkt>),
}

impl Holder {
    fn step(&mut self, dir: Direction, matches: bool) -> HoldStep {
        if !self.enabled || self.done {
            return HoldStep::Pass;
        }
        let (d, o) = (dir.index(), dir.reverse().index());
        if matches {
            if !self.held[d].is_empty() {
                return HoldStep::DropDuplicate;
            }
            self.seen[d] = true;
            if self.seen[o] {
                self.done = true;
                return HoldStep::ReleaseOther(std::mem::take(&mut self.held[o]));
            }
            return HoldStep::Hold;
        }
        // Whatever follows a held segment in its direction waits behind it, so the
        // receiver never sees a gap the sender did not make.
        if self.held[d].is_empty() {
            HoldStep::Pass
        } else {
            HoldStep::Hold
        }
    }
}

/// The wire: rules in, decisions out. See the module documentation.
#[derive(Debug)]
pub struct Wire {
    rules: Rules,
    rng: [SplitMix64; 2],
    packets: u64,
    segments: [u64; 2],
    fin: Holder,
    syn: Holder,
    /// SYN,ACKs seen from the server: (server port, client port, server ISN).
    syn_acks: Vec<(u16, u16, u32)>,
    queue: Vec<Queued>,
    order: u64,
    out: VecDeque<Transmit>,
    events: Vec<WireEvent>,
}

impl Wire {
    /// A wire applying `rules`.
    pub fn new(rules: Rules) -> Wire {
        // Two streams from one seed: the directions must not share draws, or the
        // interleaving of the two would change each one's pattern.
        let mut root = SplitMix64::new(rules.seed);
        let rng = [
            SplitMix64::new(root.next_u64()),
            SplitMix64::new(root.next_u64()),
        ];
        Wire {
            fin: Holder {
                enabled: rules.hold_first_fin,
                ..Holder::default()
            },
            syn: Holder {
                enabled: rules.hold_syn,
                ..Holder::default()
            },
            rules,
            rng,
            packets: 0,
            segments: [0; 2],
            syn_acks: Vec::new(),
            queue: Vec::new(),
            order: 0,
            out: VecDeque::new(),
            events: Vec::new(),
        }
    }

    /// The rules this wire applies.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Takes in one packet read from the device on the `dir` side at `now_ns`.
    pub fn handle(&mut self, now_ns: u64, dir: Direction, bytes: &[u8]) {
        self.packets += 1;
        let pkt = Pkt {
            id: self.packets,
            dir,
            bytes: bytes.to_vec(),
        };
        let Some(tcp) = tcp_summary(bytes) else {
            // Not TCP (or not parseable): no rule applies, only the delay.
            self.send(now_ns, pkt, Action::Forward, false, false);
            return;
        };
        let d = dir.index();
        self.segments[d] += 1;
        let n = self.segments[d];
        let rng = &mut self.rng[d];
        let (lose, dup, reorder) = (
            rng.chance_ppm(self.rules.loss_ppm),
            rng.chance_ppm(self.rules.dup_ppm),
            rng.chance_ppm(self.rules.reorder_ppm),
        );
        if dir == Direction::ServerToClient && tcp.has(flags::SYN | flags::ACK) {
            self.syn_acks.push((tcp.src_port, tcp.dst_port, tcp.seq));
        }

        let all = self.segments[0] + self.segments[1];
        let drop = if self.rules.cut_after.is_some_and(|cut| all > cut) {
            Some(DropReason::Cut)
        } else if self.rules.drop_nth.contains(&(dir, n)) {
            Some(DropReason::Nth { n })
        } else if self.rules.drop_third_ack && self.is_third_ack(dir, &tcp) {
            Some(DropReason::ThirdAck)
        } else if lose {
            Some(DropReason::Loss)
        } else {
            None
        };
        if let Some(reason) = drop {
            self.record(now_ns, &pkt, Action::Drop { reason });
            return;
        }

        for rule in [HoldRule::Syn, HoldRule::FirstFin] {
            let (holder, matches) = match rule {
                HoldRule::Syn => (&mut self.syn, tcp.is_syn_only()),
                HoldRule::FirstFin => (&mut self.fin, tcp.has(flags::FIN)),
            };
            match holder.step(dir, matches) {
                HoldStep::Pass => {}
                HoldStep::Hold => {
                    holder.held[d].push(pkt.clone());
                    self.record(now_ns, &pkt, Action::Hold { rule });
                    return;
                }
                HoldStep::DropDuplicate => {
                    let reason = DropReason::HeldDuplicate;
                    self.record(now_ns, &pkt, Action::Drop { reason });
                    return;
                }
                HoldStep::ReleaseOther(held) => {
                    for other in held {
                        self.send(now_ns, other, Action::Release, false, false);
                    }
                }
            }
        }
        self.send(now_ns, pkt, Action::Forward, dup, reorder);
    }

    /// The earliest moment a waiting packet is due, if any packet waits.
    pub fn next_timeout(&self) -> Option<u64> {
        self.queue.iter().map(|q| q.at_ns).min()
    }

    /// Passes on every waiting packet that is due at `now_ns`.
    pub fn handle_timeout(&mut self, now_ns: u64) {
        loop {
            let due = self
                .queue
                .iter()
                .enumerate()
                .filter(|(_, q)| q.at_ns <= now_ns)
                .min_by_key(|(_, q)| (q.at_ns, q.order))
                .map(|(i, _)| i);
            let Some(i) = due else { break };
            let q = self.queue.remove(i);
            self.transmit(now_ns, q.pkt, Action::Deliver, q.reordered);
        }
    }

    /// The next packet to write out, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// The decisions so far.
    pub fn events(&self) -> &[WireEvent] {
        &self.events
    }

    /// Ends the run at `now_ns`: whatever is still held or waiting is discarded (and
    /// recorded so), and all decisions are handed over in order.
    pub fn finish(mut self, now_ns: u64) -> Vec<WireEvent> {
        let mut left: Vec<Pkt> = Vec::new();
        for holder in [&mut self.syn, &mut self.fin] {
            for held in &mut holder.held {
                left.append(held);
            }
        }
        self.queue.sort_by_key(|q| (q.at_ns, q.order));
        left.extend(self.queue.drain(..).map(|q| q.pkt));
        for pkt in left {
            self.record(now_ns, &pkt, Action::Discard);
        }
        self.events
    }

    /// Is this the client's ACK of a SYN,ACK seen from the server?
    fn is_third_ack(&self, dir: Direction, tcp: &TcpSummary) -> bool {
        dir == Direction::ClientToServer
            && tcp.is_pure_ack()
            && self.syn_acks.iter().any(|&(sport, cport, isn)| {
                sport == tcp.dst_port && cport == tcp.src_port && isn.wrapping_add(1) == tcp.ack
            })
    }

    /// The last stage for a packet that survived the rules: delay, reorder, duplicate.
    /// `now_action` is what passing on at once is called (Forward or Release).
    fn send(&mut self, now_ns: u64, pkt: Pkt, now_action: Action, dup: bool, reorder: bool) {
        if dup {
            self.record(now_ns, &pkt, Action::Duplicate);
            self.send(now_ns, pkt.clone(), now_action, false, false);
        }
        let delay_ns = self.rules.delay_ns;
        if reorder {
            let until_ns = now_ns + delay_ns + REORDER_WAIT_NS;
            self.record(now_ns, &pkt, Action::Reorder { until_ns });
            self.enqueue(until_ns, pkt, true);
        } else if delay_ns > 0 {
            let until_ns = now_ns + delay_ns;
            self.record(now_ns, &pkt, Action::Delay { until_ns });
            self.enqueue(until_ns, pkt, false);
        } else {
            self.transmit(now_ns, pkt, now_action, false);
        }
    }

    fn enqueue(&mut self, at_ns: u64, pkt: Pkt, reordered: bool) {
        self.order += 1;
        self.queue.push(Queued {
            at_ns,
            order: self.order,
            pkt,
            reordered,
        });
    }

    /// Writes a packet out now; a packet that is not itself reordered lets the
    /// reordered ones of its direction go right behind it.
    fn transmit(&mut self, now_ns: u64, pkt: Pkt, action: Action, reordered: bool) {
        self.record(now_ns, &pkt, action);
        let dir = pkt.dir;
        self.out.push_back(Transmit {
            dir,
            bytes: pkt.bytes,
        });
        if reordered {
            return;
        }
        let mut waiting: Vec<Queued> = Vec::new();
        let mut i = 0;
        while i < self.queue.len() {
            if self.queue[i].reordered && self.queue[i].pkt.dir == dir {
                waiting.push(self.queue.remove(i));
            } else {
                i += 1;
            }
        }
        waiting.sort_by_key(|q| q.order);
        for q in waiting {
            self.record(now_ns, &q.pkt, Action::Deliver);
            self.out.push_back(Transmit {
                dir,
                bytes: q.pkt.bytes,
            });
        }
    }

    fn record(&mut self, ts_ns: u64, pkt: &Pkt, action: Action) {
        self.events.push(WireEvent {
            ts_ns,
            packet: pkt.id,
            dir: pkt.dir,
            action,
            bytes: pkt.bytes.clone(),
        });
    }
}

#[cfg(test)]
mod tests;
