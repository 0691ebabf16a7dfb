//! States from segments alone, by the RFC 9293 event-processing rules (§3.10), for
//! captures without kernel events. Every state made here is marked `inferred`.
//!
//! Like the RFC (§3.10.7.4, steps five then eight) and Linux, a segment's ACK is
//! processed before its FIN: FIN-WAIT-1 receiving FIN,ACK that acknowledges our FIN goes
//! to FIN-WAIT-2 and then TIME-WAIT, the path the kernel's tracepoint shows too.

use super::build::{build_one, conversations, seq_ge, States};
use super::{flags, Connection, Role, Segment};
use crate::state::TcpState;

/// What is known of one endpoint while walking the segments.
#[derive(Debug, Clone, Copy, Default)]
struct Endpoint {
    /// None until the first segment says something about it.
    state: Option<TcpState>,
    /// The sequence number just after our FIN, once sent.
    fin_end: Option<u32>,
    /// The sequence number just after our SYN, once sent.
    syn_end: Option<u32>,
}

/// Infers both endpoints' states for every connection in `segments`.
pub fn infer(segments: &[Segment]) -> Vec<Connection> {
    conversations(segments)
        .iter()
        .map(|conv| build_one(conv, States::Inferred, &[]))
        .collect()
}

/// (index of the segment that caused it, index of the segment it sits next to, role,
/// from, to, caused by sending it). The two indices differ only for crossing FINs.
pub(super) type Inferred = (usize, usize, Role, TcpState, TcpState, bool);

/// The state changes the segments imply, in the order they are found.
pub(super) fn walk(segments: &[Segment], client: std::net::SocketAddr) -> Vec<Inferred> {
    use TcpState::*;
    let mut ep = [Endpoint::default(); 2];
    let idx = |r: Role| usize::from(r == Role::Server);
    // A capture that starts with a SYN shows the whole life; otherwise the connection
    // was already open when the capture began.
    match segments.first() {
        Some(s) if s.has(flags::SYN) && !s.has(flags::ACK) => {
            ep[0].state = Some(Closed);
        }
        Some(_) => {
            ep[0].state = Some(Established);
            ep[1].state = Some(Established);
        }
        None => {}
    }
    // A SYN that is answered by a SYN,ACK found a listener; one answered by RST found
    // no socket, and that side never had a state.
    let server_listens = segments
        .iter()
        .any(|s| s.src != client && s.has(flags::SYN | flags::ACK));
    let mut out = Vec::new();
    let mut crossed = Vec::new();
    for (i, s) in segments.iter().enumerate() {
        let from = if s.src == client {
            Role::Client
        } else {
            Role::Server
        };
        let to = from.peer();
        // A change of `ep` caused by sending or receiving segment `at`.
        let mut change_at = |at: usize, ep: &mut Endpoint, role: Role, next: TcpState, sent| {
            if let Some(prev) = ep.state {
                if prev != next {
                    out.push((at, at, role, prev, next, sent));
                }
            }
            ep.state = Some(next);
        };

        // What sending it says about the sender.
        let (a, b) = if idx(from) == 0 {
            let (x, y) = ep.split_at_mut(1);
            (&mut x[0], &mut y[0])
        } else {
            let (x, y) = ep.split_at_mut(1);
            (&mut y[0], &mut x[0])
        };
        let (snd, rcv) = (a, b);
        if s.has(flags::SYN) {
            snd.syn_end = Some(s.seq.wrapping_add(1));
            if !s.has(flags::ACK) && snd.state == Some(Closed) {
                change_at(i, snd, from, SynSent, true);
            }
        }
        if s.has(flags::RST) {
            if matches!(snd.state, Some(st) if st != Closed && st != Listen) {
                change_at(i, snd, from, Closed, true);
            }
        } else if s.has(flags::FIN) && snd.fin_end.is_none() {
            snd.fin_end = Some(s.seq.wrapping_add(s.len).wrapping_add(1));
            match snd.state {
                Some(Established | SynRecv) => change_at(i, snd, from, FinWait1, true),
                Some(CloseWait) => change_at(i, snd, from, LastAck, true),
                _ => {}
            }
        }

        // What receiving it does to the receiver.
        if s.has(flags::RST) {
            match rcv.state {
                Some(Closed | Listen) | None => {}
                Some(_) => change_at(i, rcv, to, Closed, false),
            }
            continue;
        }
        if s.has(flags::SYN) && !s.has(flags::ACK) {
            match rcv.state {
                // The first SYN reaches a listener: it was listening all along.
                None if server_listens => {
                    rcv.state = Some(Listen);
                    change_at(i, rcv, to, SynRecv, false);
                }
                Some(SynSent) => change_at(i, rcv, to, SynRecv, false),
                _ => {}
            }
        }
        if s.has(flags::SYN | flags::ACK) && rcv.state == Some(SynSent) {
            change_at(i, rcv, to, Established, false);
        }
        if s.has(flags::ACK) {
            let acks = |end: Option<u32>| end.is_some_and(|e| seq_ge(s.ack, e));
            match rcv.state {
                Some(SynRecv) if acks(rcv.syn_end) => change_at(i, rcv, to, Established, false),
                Some(FinWait1) if acks(rcv.fin_end) => change_at(i, rcv, to, FinWait2, false),
                Some(Closing) if acks(rcv.fin_end) => change_at(i, rcv, to, TimeWait, false),
                Some(LastAck) if acks(rcv.fin_end) => change_at(i, rcv, to, Closed, false),
                _ => {}
            }
        }
        if s.has(flags::FIN) {
            // Crossing FINs: the receiver's own FIN, captured after this one, does not
            // acknowledge it, so the receiver sent it before this FIN arrived.
            let fin_end = s.seq.wrapping_add(s.len).wrapping_add(1);
            let crossing = segments[i + 1..]
                .iter()
                .enumerate()
                .find(|(_, n)| n.src == s.dst)
                .filter(|(_, n)| {
                    n.has(flags::FIN) && !(n.has(flags::ACK) && seq_ge(n.ack, fin_end))
                })
                .map(|(j, n)| (i + 1 + j, n));
            if let (Some((j, n)), None, Some(Established)) = (crossing, rcv.fin_end, rcv.state) {
                // Caused by sending segment j, but it happened before this one arrived.
                rcv.fin_end = Some(n.seq.wrapping_add(n.len).wrapping_add(1));
                rcv.state = Some(FinWait1);
                crossed.push((j, i, to, Established, FinWait1, true));
            }
            match rcv.state {
                Some(Established) => change_at(i, rcv, to, CloseWait, false),
                Some(FinWait1) => change_at(i, rcv, to, Closing, false),
                Some(FinWait2) => change_at(i, rcv, to, TimeWait, false),
                _ => {}
            }
        }
    }
    out.extend(crossed);
    out
}
