//! Connections and relative sequence numbers.
//!
//! A [`FlowKey`] names a TCP connection independently of direction (the endpoint that
//! sorts first is `a`); [`Direction`] says which way one segment went.
//!
//! Two relative-number rules live here because the two tools we are compared with
//! differ, and each view must match its reference exactly:
//!
//! - [`WiresharkSeq`] (used for JSON and the timeline): per direction, the base is the
//!   sequence number of the SYN, else the first segment's sequence number minus one;
//!   when the reverse direction has no base yet and ACK is set, its base becomes
//!   ack − 1. SACK edges are relative to the base of the direction they acknowledge.
//! - [`TcpdumpSeq`] (the one-line view): tcpdump only looks at segments with ACK set;
//!   the first such segment of a connection, or any SYN, records `seq` and `ack − 1`
//!   and prints absolute numbers; later ones print `seq − base`, `ack − base`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

/// One side of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// IP address.
    pub addr: IpAddr,
    /// TCP port.
    pub port: u16,
}

/// Which way a segment went, relative to the key's `a` endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From `a` to `b`.
    AtoB,
    /// From `b` to `a`.
    BtoA,
}

/// A connection, named the same way from both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// The endpoint that sorts first (by address, then port).
    pub a: Endpoint,
    /// The other endpoint.
    pub b: Endpoint,
}

impl FlowKey {
    /// The key of a segment from `src` to `dst`, and the segment's direction.
    pub fn new(src: Endpoint, dst: Endpoint) -> (FlowKey, Direction) {
        if src <= dst {
            (FlowKey { a: src, b: dst }, Direction::AtoB)
        } else {
            (FlowKey { a: dst, b: src }, Direction::BtoA)
        }
    }
}

/// FNV-1a: several times faster than SipHash on these small keys. It does not resist
/// hash flooding; a hostile capture file can at worst make lookups slow.
#[derive(Debug, Default, Clone, Copy)]
pub struct FnvHasher(u64);

impl Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// A `HashMap` with [`FnvHasher`].
pub type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<FnvHasher>>;

/// What one segment's numbers look like relative to its connection's bases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relative {
    /// Relative sequence number.
    pub seq: u32,
    /// Relative acknowledgment number (0 without ACK).
    pub ack: u32,
    /// Subtract this from a SACK edge to make it relative.
    pub sack_base: u32,
}

/// The segment fields the relative-number rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentNumbers {
    /// TCP flags.
    pub flags: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
}

#[derive(Debug, Default, Clone, Copy)]
struct Bases {
    // [AtoB, BtoA]
    base: [Option<u32>; 2],
}

fn idx(d: Direction) -> (usize, usize) {
    match d {
        Direction::AtoB => (0, 1),
        Direction::BtoA => (1, 0),
    }
}

/// Wireshark's relative sequence numbers (`tcp.seq`, `tcp.ack`, SACK edges).
#[derive(Debug, Default)]
pub struct WiresharkSeq {
    flows: FnvMap<FlowKey, Bases>,
}

impl WiresharkSeq {
    /// Records a segment and returns its relative numbers.
    pub fn observe(&mut self, key: FlowKey, dir: Direction, s: SegmentNumbers) -> Relative {
        use crate::wire::tcp::{ACK, SYN};
        let bases = self.flows.entry(key).or_default();
        let (fwd, rev) = idx(dir);
        // A SYN (without ACK) carrying a different ISN on a known key is a new
        // connection reusing the ports: start over, as Wireshark starts a new stream.
        if s.flags & (SYN | ACK) == SYN && bases.base[fwd].is_some_and(|b| b != s.seq) {
            *bases = Bases::default();
        }
        let fwd_base = *bases.base[fwd].get_or_insert(if s.flags & SYN != 0 {
            s.seq
        } else {
            s.seq.wrapping_sub(1)
        });
        if s.flags & ACK != 0 && bases.base[rev].is_none() {
            bases.base[rev] = Some(s.ack.wrapping_sub(1));
        }
        let rev_base = bases.base[rev].unwrap_or(0);
        Relative {
            seq: s.seq.wrapping_sub(fwd_base),
            ack: if s.flags & ACK != 0 {
                s.ack.wrapping_sub(rev_base)
            } else {
                0
            },
            sack_base: rev_base,
        }
    }
}

/// tcpdump's relative sequence numbers (the default one-line view).
#[derive(Debug, Default)]
pub struct TcpdumpSeq {
    // (seq base of a→b, seq base of b→a as "ack" in tcpdump's naming)
    flows: FnvMap<FlowKey, (u32, u32)>,
}

impl TcpdumpSeq {
    /// Records a segment and returns the numbers tcpdump prints (absolute for
    /// segments without ACK, for the first segment seen and for every SYN).
    pub fn observe(&mut self, key: FlowKey, dir: Direction, s: SegmentNumbers) -> Relative {
        use crate::wire::tcp::{ACK, SYN};
        let absolute = Relative {
            seq: s.seq,
            ack: s.ack,
            sack_base: 0,
        };
        if s.flags & ACK == 0 {
            return absolute;
        }
        let rev = dir == Direction::BtoA;
        match self.flows.get_mut(&key) {
            Some(entry) if s.flags & SYN == 0 => {
                let (th_seq, th_ack) = *entry;
                if rev {
                    Relative {
                        seq: s.seq.wrapping_sub(th_ack),
                        ack: s.ack.wrapping_sub(th_seq),
                        sack_base: th_seq,
                    }
                } else {
                    Relative {
                        seq: s.seq.wrapping_sub(th_seq),
                        ack: s.ack.wrapping_sub(th_ack),
                        sack_base: th_ack,
                    }
                }
            }
            _ => {
                let entry = if rev {
                    (s.ack.wrapping_sub(1), s.seq)
                } else {
                    (s.seq, s.ack.wrapping_sub(1))
                };
                self.flows.insert(key, entry);
                let sack_base = if rev { entry.0 } else { entry.1 };
                Relative {
                    sack_base,
                    ..absolute
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tcp::{ACK, PSH, SYN};

    fn ep(port: u16) -> Endpoint {
        Endpoint {
            addr: "127.0.0.1".parse().unwrap(),
            port,
        }
    }

    fn seg(flags: u16, seq: u32, ack: u32) -> SegmentNumbers {
        SegmentNumbers { flags, seq, ack }
    }

    #[test]
    fn wireshark_handshake_starts_at_zero_then_one() {
        let (key, c2s) = FlowKey::new(ep(40000), ep(80));
        let (_, s2c) = FlowKey::new(ep(80), ep(40000));
        let mut w = WiresharkSeq::default();
        assert_eq!(w.observe(key, c2s, seg(SYN, 1000, 0)).seq, 0);
        let r = w.observe(key, s2c, seg(SYN | ACK, 5000, 1001));
        assert_eq!((r.seq, r.ack), (0, 1));
        let r = w.observe(key, c2s, seg(ACK | PSH, 1001, 5001));
        assert_eq!((r.seq, r.ack), (1, 1));
    }

    #[test]
    fn wireshark_mid_connection_starts_at_one_and_bases_reverse_on_ack() {
        let (key, c2s) = FlowKey::new(ep(40000), ep(80));
        let (_, s2c) = FlowKey::new(ep(80), ep(40000));
        let mut w = WiresharkSeq::default();
        let r = w.observe(key, c2s, seg(ACK, 7000, 9000));
        assert_eq!((r.seq, r.ack), (1, 1));
        let r = w.observe(key, s2c, seg(ACK, 9000, 7010));
        assert_eq!((r.seq, r.ack), (1, 11));
    }

    #[test]
    fn tcpdump_prints_absolute_until_it_has_seen_an_ack() {
        let (key, c2s) = FlowKey::new(ep(40000), ep(80));
        let (_, s2c) = FlowKey::new(ep(80), ep(40000));
        let mut t = TcpdumpSeq::default();
        assert_eq!(t.observe(key, c2s, seg(SYN, 1000, 0)).seq, 1000);
        let r = t.observe(key, s2c, seg(SYN | ACK, 5000, 1001));
        assert_eq!((r.seq, r.ack), (5000, 1001));
        let r = t.observe(key, c2s, seg(ACK, 1001, 5001));
        assert_eq!((r.seq, r.ack), (1, 1));
    }
}
