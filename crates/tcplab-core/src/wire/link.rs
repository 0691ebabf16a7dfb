//! Link-layer headers: Ethernet II (with 802.1Q tags), Linux cooked capture v1 (SLL)
//! and v2 (SLL2), BSD loopback, raw IP.

use super::{be16, be32, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use super::{
    LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2,
    LINKTYPE_NULL, LINKTYPE_RAW,
};

/// 802.1Q VLAN tag EtherType.
const ETHERTYPE_VLAN: u16 = 0x8100;
/// 802.1ad (QinQ) service tag EtherType.
const ETHERTYPE_QINQ: u16 = 0x88a8;

/// Linux `sll_pkttype` values (packet direction as the kernel saw it).
pub mod pkttype {
    /// To us.
    pub const HOST: u16 = 0;
    /// To everyone.
    pub const BROADCAST: u16 = 1;
    /// To a group.
    pub const MULTICAST: u16 = 2;
    /// To someone else (promiscuous).
    pub const OTHERHOST: u16 = 3;
    /// Sent by us.
    pub const OUTGOING: u16 = 4;
}

/// A decoded link-layer header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Ethernet II.
    Ethernet {
        /// Destination MAC.
        dst: [u8; 6],
        /// Source MAC.
        src: [u8; 6],
        /// EtherType after any VLAN tags.
        ethertype: u16,
        /// The innermost 802.1Q VLAN id, if tagged.
        vlan: Option<u16>,
    },
    /// Linux cooked capture v1.
    Sll {
        /// Direction (`pkttype` module).
        pkttype: u16,
        /// ARPHRD_ type of the device.
        hatype: u16,
        /// Link-layer address length.
        addr_len: u16,
        /// Link-layer address (first 8 bytes).
        addr: [u8; 8],
        /// EtherType.
        protocol: u16,
    },
    /// Linux cooked capture v2.
    Sll2 {
        /// EtherType.
        protocol: u16,
        /// Interface index the packet was seen on.
        ifindex: u32,
        /// ARPHRD_ type of the device.
        hatype: u16,
        /// Direction (`pkttype` module).
        pkttype: u8,
        /// Link-layer address length.
        addr_len: u8,
        /// Link-layer address (first 8 bytes).
        addr: [u8; 8],
    },
    /// BSD loopback: a 4-byte address family.
    Null {
        /// Address family (host byte order of the writer; both orders are accepted).
        family: u32,
    },
    /// No link header: the frame starts with an IP header.
    Raw,
    /// A link type this decoder does not know, or a header too short to read.
    Unsupported {
        /// The pcap link type.
        linktype: u32,
    },
}

impl Link {
    /// Packet direction from a cooked header (`pkttype`), if the link type carries one.
    pub fn pkttype(&self) -> Option<u16> {
        match *self {
            Link::Sll { pkttype, .. } => Some(pkttype),
            Link::Sll2 { pkttype, .. } => Some(u16::from(pkttype)),
            _ => None,
        }
    }
}

/// Minimum header length of a link type (0 when unknown).
pub fn header_len(linktype: u32) -> usize {
    match linktype {
        LINKTYPE_ETHERNET => 14,
        LINKTYPE_LINUX_SLL => 16,
        LINKTYPE_LINUX_SLL2 => 20,
        LINKTYPE_NULL => 4,
        _ => 0,
    }
}

fn addr8(b: &[u8], at: usize) -> [u8; 8] {
    let mut out = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        out.copy_from_slice(s);
    }
    out
}

fn raw_ethertype(b: &[u8]) -> u16 {
    match b.first().map(|v| v >> 4) {
        Some(6) => ETHERTYPE_IPV6,
        _ => ETHERTYPE_IPV4,
    }
}

/// Parses the link header. Returns the header and, when complete, the offset of the
/// network header and its EtherType.
pub fn parse(linktype: u32, b: &[u8]) -> (Link, Option<(usize, u16)>) {
    let unsupported = Link::Unsupported { linktype };
    match linktype {
        LINKTYPE_ETHERNET => {
            let (Some(d), Some(s), Some(mut ethertype)) = (b.get(0..6), b.get(6..12), be16(b, 12))
            else {
                return (
                    Link::Ethernet {
                        dst: [0; 6],
                        src: [0; 6],
                        ethertype: 0,
                        vlan: None,
                    },
                    None,
                );
            };
            let mut dst = [0u8; 6];
            dst.copy_from_slice(d);
            let mut src = [0u8; 6];
            src.copy_from_slice(s);
            let mut off = 14;
            let mut vlan = None;
            // Walk at most two tags (QinQ); anything deeper is not worth decoding.
            for _ in 0..2 {
                if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
                    break;
                }
                match (be16(b, off), be16(b, off + 2)) {
                    (Some(tci), Some(inner)) => {
                        vlan = Some(tci & 0x0fff);
                        ethertype = inner;
                        off += 4;
                    }
                    _ => {
                        let link = Link::Ethernet {
                            dst,
                            src,
                            ethertype,
                            vlan,
                        };
                        return (link, None);
                    }
                }
            }
            let link = Link::Ethernet {
                dst,
                src,
                ethertype,
                vlan,
            };
            (link, Some((off, ethertype)))
        }
        LINKTYPE_LINUX_SLL => {
            let (Some(pkttype), Some(hatype), Some(addr_len), Some(protocol)) =
                (be16(b, 0), be16(b, 2), be16(b, 4), be16(b, 14))
            else {
                return (unsupported, None);
            };
            let link = Link::Sll {
                pkttype,
                hatype,
                addr_len,
                addr: addr8(b, 6),
                protocol,
            };
            (link, Some((16, protocol)))
        }
        LINKTYPE_LINUX_SLL2 => {
            let (Some(protocol), Some(ifindex), Some(hatype), Some(&pkttype), Some(&addr_len)) =
                (be16(b, 0), be32(b, 4), be16(b, 8), b.get(10), b.get(11))
            else {
                return (unsupported, None);
            };
            if b.len() < 20 {
                return (unsupported, None);
            }
            let link = Link::Sll2 {
                protocol,
                ifindex,
                hatype,
                pkttype,
                addr_len,
                addr: addr8(b, 12),
            };
            (link, Some((20, protocol)))
        }
        LINKTYPE_NULL => {
            let Some(s) = b.get(0..4) else {
                return (unsupported, None);
            };
            let le = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
            let be = u32::from_be_bytes([s[0], s[1], s[2], s[3]]);
            let family = if le < 256 { le } else { be };
            // AF_INET is 2 everywhere; AF_INET6 is 10, 24, 28 or 30 depending on the OS.
            let ethertype = match family {
                2 => ETHERTYPE_IPV4,
                10 | 24 | 28 | 30 => ETHERTYPE_IPV6,
                _ => 0,
            };
            (Link::Null { family }, Some((4, ethertype)))
        }
        LINKTYPE_RAW => (Link::Raw, Some((0, raw_ethertype(b)))),
        LINKTYPE_IPV4 => (Link::Raw, Some((0, ETHERTYPE_IPV4))),
        LINKTYPE_IPV6 => (Link::Raw, Some((0, ETHERTYPE_IPV6))),
        _ => (unsupported, None),
    }
}
