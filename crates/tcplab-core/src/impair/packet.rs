//! Just enough of an IP packet to apply the wire's rules: is it TCP, its ports, sequence
//! and acknowledgement numbers, flags and payload length.
//!
//! Input is what a TUN device opened with `IFF_NO_PI` yields: a bare IPv4 or IPv6
//! packet, no link-layer header, which [`crate::wire::decode`] reads as
//! `LINKTYPE_RAW`. This module only narrows the decoded packet to what the rules need.

use crate::wire;

/// TCP flag bits (the same values as [`crate::wire::tcp`]).
pub mod flags {
    pub use crate::wire::tcp::{ACK, FIN, PSH, RST, SYN};
}

/// The TCP facts of one packet that the wire's rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSummary {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (meaningful when ACK is set).
    pub ack: u32,
    /// The flag bits (see [`flags`]).
    pub flags: u16,
    /// Bytes of payload after the TCP header, as the IP length says.
    pub payload_len: usize,
}

impl TcpSummary {
    /// True when every bit of `mask` is set.
    pub fn has(&self, mask: u16) -> bool {
        self.flags & mask == mask
    }

    /// A SYN without ACK: the first segment of an open.
    pub fn is_syn_only(&self) -> bool {
        self.has(flags::SYN) && !self.has(flags::ACK)
    }

    /// An ACK with no payload and no SYN, FIN or RST.
    pub fn is_pure_ack(&self) -> bool {
        self.has(flags::ACK)
            && self.flags & (flags::SYN | flags::FIN | flags::RST) == 0
            && self.payload_len == 0
    }
}

/// Extracts the TCP summary of a bare IPv4 or IPv6 packet; `None` for anything else
/// (another protocol, a later fragment, a truncated or malformed header).
pub fn tcp_summary(packet: &[u8]) -> Option<TcpSummary> {
    let decoded = wire::decode(wire::LINKTYPE_RAW, packet);
    let tcp = decoded.tcp?;
    Some(TcpSummary {
        src_port: tcp.src_port,
        dst_port: tcp.dst_port,
        seq: tcp.seq,
        ack: tcp.ack,
        flags: tcp.flags,
        payload_len: decoded.payload_len,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a bare IPv4 TCP packet (checksums zero: the wire never checks them).
    pub(crate) fn v4(
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        fl: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let total = 40 + payload.len();
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[8] = 64;
        p[9] = wire::tcp::PROTOCOL;
        p[12..16].copy_from_slice(&[192, 0, 2, 1]);
        p[16..20].copy_from_slice(&[192, 0, 2, 2]);
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&dport.to_be_bytes());
        p[24..28].copy_from_slice(&seq.to_be_bytes());
        p[28..32].copy_from_slice(&ack.to_be_bytes());
        p[32] = (5 << 4) | (fl >> 8) as u8;
        p[33] = fl as u8;
        p[40..].copy_from_slice(payload);
        p
    }

    #[test]
    fn reads_an_ipv4_segment() {
        let p = v4(40000, 54321, 7, 9, flags::ACK | flags::PSH, b"hello");
        let s = tcp_summary(&p).unwrap();
        assert_eq!((s.src_port, s.dst_port, s.seq, s.ack), (40000, 54321, 7, 9));
        assert_eq!(s.payload_len, 5);
        assert!(!s.is_pure_ack());
    }

    #[test]
    fn reads_an_ipv6_segment_after_a_hop_by_hop_header() {
        let mut p = vec![0u8; 40 + 8 + 20];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&28u16.to_be_bytes());
        p[6] = 0; // hop-by-hop
        p[40] = wire::tcp::PROTOCOL;
        p[41] = 0;
        p[48..50].copy_from_slice(&1u16.to_be_bytes());
        p[50..52].copy_from_slice(&2u16.to_be_bytes());
        p[60] = 5 << 4;
        p[61] = flags::SYN as u8;
        let s = tcp_summary(&p).unwrap();
        assert_eq!((s.src_port, s.dst_port), (1, 2));
        assert!(s.is_syn_only());
        assert_eq!(s.payload_len, 0);
    }

    #[test]
    fn rejects_what_is_not_a_whole_tcp_header() {
        let p = v4(1, 2, 0, 0, flags::SYN, b"");
        for cut in 0..40 {
            assert_eq!(tcp_summary(&p[..cut]), None, "cut at {cut}");
        }
        let mut udp = p.clone();
        udp[9] = 17;
        assert_eq!(tcp_summary(&udp), None);
        let mut fragment = p;
        fragment[7] = 1;
        assert_eq!(tcp_summary(&fragment), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..128)) {
            let _ = tcp_summary(&bytes);
        }

        #[test]
        fn arbitrary_bytes_behind_a_valid_version_never_panic(
            v6 in proptest::bool::ANY,
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..128),
        ) {
            let mut bytes = bytes;
            if let Some(b) = bytes.first_mut() {
                *b = if v6 { 0x60 } else { 0x45 | (*b & 0x0f) };
            }
            let _ = tcp_summary(&bytes);
        }
    }
}
