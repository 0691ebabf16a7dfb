//! Frame decoding: link layer (Ethernet, Linux cooked SLL and SLL2, raw IP), IPv4
//! (options, fragments), IPv6 (extension headers) and TCP with every option.
//!
//! Have RFC 791 (IPv4), RFC 8200 (IPv6), RFC 9293 (TCP) and RFC 7323 / 2018 / 7413
//! (timestamps and window scale, SACK, Fast Open) open while reading this module.
//!
//! Two layers, as smoltcp does: a zero-copy view over the bytes ([`TcpView`],
//! [`Ipv4View`], [`Ipv6View`]) whose `new_checked` proves the fixed header is there, so
//! its accessors cannot panic; and a plain struct with the meaning ("repr":
//! [`TcpHeader`], [`Ipv4Header`], [`Ipv6Header`]) that `parse` builds from the view.
//! Variable parts (IP options, TCP options, payload) stay borrowed slices, so decoding
//! allocates nothing. Link headers are small enough to go straight to the repr.
//!
//! A frame shorter than its headers say decodes as far as the bytes go: [`Packet`]
//! holds every layer that was complete and a [`Truncation`] saying which layer ran out
//! and at which byte offset of the frame.

pub mod ip;
pub mod link;
pub mod tcp;

pub use ip::{Ip, Ipv4Header, Ipv4View, Ipv6Header, Ipv6View};
pub use link::Link;
pub use tcp::{TcpHeader, TcpOption, TcpView};

/// pcap link type: BSD loopback (4-byte address family in host order).
pub const LINKTYPE_NULL: u32 = 0;
/// pcap link type: Ethernet II (also what `lo` uses, with zero MAC addresses).
pub const LINKTYPE_ETHERNET: u32 = 1;
/// pcap link type: raw IPv4 or IPv6, no link header.
pub const LINKTYPE_RAW: u32 = 101;
/// pcap link type: Linux cooked capture v1 (16-byte header).
pub const LINKTYPE_LINUX_SLL: u32 = 113;
/// pcap link type: raw IPv4 only.
pub const LINKTYPE_IPV4: u32 = 228;
/// pcap link type: raw IPv6 only.
pub const LINKTYPE_IPV6: u32 = 229;
/// pcap link type: Linux cooked capture v2 (20-byte header with interface index).
pub const LINKTYPE_LINUX_SLL2: u32 = 276;

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;

/// Which header the captured bytes ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// The link-layer header (Ethernet, SLL, ...).
    Link,
    /// The fixed IPv4 header or its options.
    Ipv4,
    /// The fixed IPv6 header.
    Ipv6,
    /// An IPv6 extension header.
    Ipv6Extension,
    /// The fixed 20-byte TCP header.
    Tcp,
    /// The TCP options.
    TcpOptions,
    /// The TCP (or other upper-layer) payload: the snap length cut it short.
    Payload,
}

impl Layer {
    /// Short lowercase name, as printed in `[|name]` truncation marks.
    pub fn name(self) -> &'static str {
        match self {
            Layer::Link => "link",
            Layer::Ipv4 => "ip",
            Layer::Ipv6 => "ip6",
            Layer::Ipv6Extension => "ip6-ext",
            Layer::Tcp => "tcp",
            Layer::TcpOptions => "tcp-options",
            Layer::Payload => "payload",
        }
    }
}

/// Where a truncated frame ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    /// The header (or payload) that the captured bytes do not complete.
    pub layer: Layer,
    /// Byte offset in the frame where the captured bytes end (= frame length).
    pub offset: usize,
    /// How many bytes the layer needed, counted from the frame start.
    pub needed: usize,
}

/// A decoded frame: every complete layer, and where the bytes ran out if they did.
#[derive(Debug, Clone)]
pub struct Packet<'a> {
    /// The whole captured frame.
    pub frame: &'a [u8],
    /// The link-layer header.
    pub link: Link,
    /// Offset of the network-layer header in `frame`, when the link layer was complete.
    pub net_offset: Option<usize>,
    /// The network-layer protocol (EtherType) the link layer announced, if any.
    pub ethertype: Option<u16>,
    /// IPv4 or IPv6 header, when complete.
    pub ip: Option<Ip<'a>>,
    /// Offset of the TCP header in `frame`.
    pub tcp_offset: Option<usize>,
    /// TCP header, when complete (options included).
    pub tcp: Option<TcpHeader<'a>>,
    /// Captured payload bytes after the TCP header (never past the IP length, so
    /// Ethernet padding is not payload).
    pub payload: &'a [u8],
    /// Payload length according to the IP header (what tcpdump prints as `length`);
    /// larger than `payload.len()` when the snap length cut the frame.
    pub payload_len: usize,
    /// Set when the frame ends before its headers or its payload do.
    pub truncated: Option<Truncation>,
}

impl<'a> Packet<'a> {
    fn empty(frame: &'a [u8], link: Link) -> Self {
        Packet {
            frame,
            link,
            net_offset: None,
            ethertype: None,
            ip: None,
            tcp_offset: None,
            tcp: None,
            payload: &[],
            payload_len: 0,
            truncated: None,
        }
    }

    fn truncate(&mut self, layer: Layer, needed: usize) {
        self.truncated = Some(Truncation {
            layer,
            offset: self.frame.len(),
            needed,
        });
    }

    /// The bytes from the network-layer header on (what tcpdump `-X` and `-A` show).
    pub fn network_bytes(&self) -> &'a [u8] {
        match self.net_offset {
            Some(off) => self.frame.get(off..).unwrap_or(&[]),
            None => self.frame,
        }
    }
}

/// Decodes one captured frame of pcap link type `linktype`. Never panics; a frame cut
/// short decodes as far as the bytes go.
pub fn decode(linktype: u32, frame: &[u8]) -> Packet<'_> {
    let (link, net) = link::parse(linktype, frame);
    let mut pkt = Packet::empty(frame, link);
    let Some((net_offset, ethertype)) = net else {
        if !matches!(pkt.link, Link::Unsupported { .. }) {
            pkt.truncate(Layer::Link, link::header_len(linktype).max(frame.len() + 1));
        }
        return pkt;
    };
    pkt.net_offset = Some(net_offset);
    pkt.ethertype = Some(ethertype);
    let net_bytes = frame.get(net_offset..).unwrap_or(&[]);
    let parsed = match ethertype {
        ETHERTYPE_IPV4 => ip::parse_v4(net_bytes),
        ETHERTYPE_IPV6 => ip::parse_v6(net_bytes),
        _ => return pkt,
    };
    let ip = match parsed {
        Ok(ip) => ip,
        Err(t) => {
            pkt.truncate(t.layer, net_offset + t.needed);
            return pkt;
        }
    };
    let l4_offset = net_offset + ip.header_len();
    // The IP header bounds the packet; bytes past it in the frame are link padding.
    let ip_end = (net_offset + ip.total_len()).max(l4_offset);
    let l4_declared = ip_end - l4_offset;
    let captured_end = ip_end.min(frame.len());
    let l4_bytes = frame.get(l4_offset..captured_end).unwrap_or(&[]);
    let is_tcp = ip.protocol() == Some(tcp::PROTOCOL) && !ip.is_later_fragment();
    pkt.ip = Some(ip);
    if !is_tcp {
        pkt.payload = l4_bytes;
        pkt.payload_len = l4_declared;
        if captured_end < ip_end {
            pkt.truncate(Layer::Payload, ip_end);
        }
        return pkt;
    }
    pkt.tcp_offset = Some(l4_offset);
    match tcp::parse(l4_bytes) {
        Ok(header) => {
            let hlen = header.header_len();
            pkt.payload = l4_bytes.get(hlen..).unwrap_or(&[]);
            pkt.payload_len = l4_declared.saturating_sub(hlen);
            let cut = header.options_cut;
            pkt.tcp = Some(header);
            if cut {
                pkt.truncate(Layer::TcpOptions, l4_offset + hlen);
            } else if captured_end < ip_end {
                pkt.truncate(Layer::Payload, ip_end);
            }
        }
        Err(t) => pkt.truncate(t.layer, l4_offset + t.needed),
    }
    pkt
}

/// An incomplete header: which layer, and how many bytes (from the start of that
/// layer's slice) it needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Short {
    /// The layer that ran out of bytes.
    pub layer: Layer,
    /// Bytes needed from the start of the slice given to the parser.
    pub needed: usize,
}

/// Big-endian u16 at `at`, or `None` past the end.
#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

/// Big-endian u32 at `at`, or `None` past the end.
#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

#[cfg(test)]
mod tests;
