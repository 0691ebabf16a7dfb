//! TCP checksum verification that tells checksum offload apart from corruption.
//!
//! With offload (always on `lo` and veth), the kernel hands the packet to the capture
//! tap before the checksum is final: the field holds only the folded pseudo-header
//! sum, which the NIC (or nobody, on loopback) completes later. tcpdump reports those
//! as "incorrect"; we recognise that exact value and say "offloaded" instead.

use crate::wire::{Ip, Packet};

/// What the TCP checksum field says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumStatus {
    /// The checksum is right.
    Correct,
    /// The field holds the pseudo-header sum: the sender offloaded the checksum.
    Offloaded,
    /// Wrong, and not an offload placeholder; `expected` is the right value.
    Incorrect {
        /// The value that would be correct.
        expected: u16,
    },
    /// Not all of the segment was captured, or there is no TCP header.
    Unverifiable,
}

fn add(sum: u32, bytes: &[u8]) -> u32 {
    let mut s = sum;
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        s = s.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
        if s > 0xffff_0000 {
            s = (s & 0xffff) + (s >> 16);
        }
    }
    if let [last] = chunks.remainder() {
        s = s.wrapping_add(u32::from(*last) << 8);
    }
    s
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// Checks the TCP checksum of `pkt`.
pub fn tcp_checksum_status(pkt: &Packet<'_>) -> ChecksumStatus {
    let (Some(ip), Some(tcp), Some(off)) = (pkt.ip.as_ref(), pkt.tcp.as_ref(), pkt.tcp_offset)
    else {
        return ChecksumStatus::Unverifiable;
    };
    if pkt.truncated.is_some() || ip.is_fragment() {
        return ChecksumStatus::Unverifiable;
    }
    let seg_len = tcp.header_len() + pkt.payload_len;
    let Some(segment) = pkt.frame.get(off..off + seg_len) else {
        return ChecksumStatus::Unverifiable;
    };
    let mut pseudo = 0u32;
    match ip {
        Ip::V4(h) => {
            pseudo = add(pseudo, &h.src.octets());
            pseudo = add(pseudo, &h.dst.octets());
        }
        Ip::V6(h) => {
            pseudo = add(pseudo, &h.src.octets());
            let ip6 = pkt.frame.get(pkt.net_offset.unwrap_or(0)..).unwrap_or(&[]);
            let dst = crate::wire::ip::final_destination(ip6, h);
            pseudo = add(pseudo, &dst.octets());
        }
    }
    pseudo = pseudo.wrapping_add(6).wrapping_add(seg_len as u32);
    let pseudo_folded = fold(pseudo);
    let with_field = fold(add(pseudo, segment));
    if with_field == 0xffff {
        return ChecksumStatus::Correct;
    }
    if tcp.checksum == pseudo_folded {
        return ChecksumStatus::Offloaded;
    }
    // The sum without the field: subtract it back out (one's complement arithmetic).
    let without = fold(u32::from(with_field) + u32::from(!tcp.checksum));
    ChecksumStatus::Incorrect { expected: !without }
}
