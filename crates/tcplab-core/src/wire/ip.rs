//! IPv4 (RFC 791, options kept as bytes, fragments flagged) and IPv6 (RFC 8200, the
//! extension header chain walked to the upper-layer protocol).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{be16, be32, Layer, Short};

/// A decoded IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Header<'a> {
    /// Header length in bytes (IHL × 4).
    pub header_len: u8,
    /// Type of service byte (DSCP and ECN).
    pub tos: u8,
    /// Total length of header and payload.
    pub total_len: u16,
    /// Identification.
    pub id: u16,
    /// Reserved ("evil") bit.
    pub reserved_flag: bool,
    /// Don't fragment.
    pub dont_fragment: bool,
    /// More fragments follow.
    pub more_fragments: bool,
    /// Fragment offset in 8-byte units.
    pub frag_offset: u16,
    /// Time to live.
    pub ttl: u8,
    /// Upper-layer protocol number.
    pub protocol: u8,
    /// Header checksum as sent.
    pub checksum: u16,
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Option bytes (header_len − 20 bytes), undecoded.
    pub options: &'a [u8],
}

impl Ipv4Header<'_> {
    /// True for any fragment: more fragments follow, or this is not the first.
    pub fn is_fragment(&self) -> bool {
        self.more_fragments || self.frag_offset != 0
    }
}

/// Fragment header of an IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Fragment {
    /// Offset in 8-byte units.
    pub offset: u16,
    /// More fragments follow.
    pub more: bool,
    /// Identification.
    pub id: u32,
}

/// Most extension headers recorded per packet; a longer chain is still walked.
pub const MAX_EXTENSIONS: usize = 8;

/// A decoded IPv6 header with its extension header chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Header {
    /// Traffic class (DSCP and ECN).
    pub traffic_class: u8,
    /// 20-bit flow label.
    pub flow_label: u32,
    /// Payload length (extension headers included).
    pub payload_len: u16,
    /// Next header field of the fixed header.
    pub next_header: u8,
    /// Hop limit.
    pub hop_limit: u8,
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Extension header kinds in order (first `ext_count` entries are valid).
    pub extensions: [u8; MAX_EXTENSIONS],
    /// How many entries of `extensions` are valid.
    pub ext_count: u8,
    /// Length of fixed header plus extension headers.
    pub header_len: u16,
    /// The upper-layer protocol after the chain.
    pub protocol: u8,
    /// The fragment header, if there was one.
    pub fragment: Option<Ipv6Fragment>,
}

/// IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ip<'a> {
    /// IPv4.
    V4(Ipv4Header<'a>),
    /// IPv6.
    V6(Ipv6Header),
}

impl Ip<'_> {
    /// Source address.
    pub fn src(&self) -> IpAddr {
        match self {
            Ip::V4(h) => IpAddr::V4(h.src),
            Ip::V6(h) => IpAddr::V6(h.src),
        }
    }
    /// Destination address.
    pub fn dst(&self) -> IpAddr {
        match self {
            Ip::V4(h) => IpAddr::V4(h.dst),
            Ip::V6(h) => IpAddr::V6(h.dst),
        }
    }
    /// Bytes of IP header before the upper layer (IPv6: extension headers included).
    pub fn header_len(&self) -> usize {
        match self {
            Ip::V4(h) => usize::from(h.header_len),
            Ip::V6(h) => usize::from(h.header_len),
        }
    }
    /// Bytes of the whole IP packet according to its header.
    pub fn total_len(&self) -> usize {
        match self {
            Ip::V4(h) => usize::from(h.total_len),
            Ip::V6(h) => 40 + usize::from(h.payload_len),
        }
    }
    /// Upper-layer protocol (`None` when an IPv6 chain ended in "no next header").
    pub fn protocol(&self) -> Option<u8> {
        match self {
            Ip::V4(h) => Some(h.protocol),
            Ip::V6(h) if h.protocol == 59 => None,
            Ip::V6(h) => Some(h.protocol),
        }
    }
    /// True for a fragment that does not start at offset 0 (no upper header in it).
    pub fn is_later_fragment(&self) -> bool {
        match self {
            Ip::V4(h) => h.frag_offset != 0,
            Ip::V6(h) => h.fragment.is_some_and(|f| f.offset != 0),
        }
    }
    /// True for any fragment.
    pub fn is_fragment(&self) -> bool {
        match self {
            Ip::V4(h) => h.is_fragment(),
            Ip::V6(h) => h.fragment.is_some(),
        }
    }
}

/// Zero-copy view of an IPv4 header: [`Ipv4View::new_checked`] proves the fixed 20
/// bytes are there, so the accessors index an array and cannot panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4View<'a> {
    fixed: &'a [u8; 20],
    rest: &'a [u8],
}

impl<'a> Ipv4View<'a> {
    /// A view of `b`, if it holds the fixed header.
    pub fn new_checked(b: &'a [u8]) -> Result<Self, Short> {
        match b.split_first_chunk::<20>() {
            Some((fixed, rest)) => Ok(Ipv4View { fixed, rest }),
            None => Err(Short {
                layer: Layer::Ipv4,
                needed: 20,
            }),
        }
    }
    /// Header length in bytes as sent (IHL × 4; may be below 20 when malformed).
    pub fn header_len(&self) -> u8 {
        (self.fixed[0] & 0x0f) * 4
    }
    /// Type of service.
    pub fn tos(&self) -> u8 {
        self.fixed[1]
    }
    /// Total length.
    pub fn total_len(&self) -> u16 {
        u16::from_be_bytes([self.fixed[2], self.fixed[3]])
    }
    /// Identification.
    pub fn id(&self) -> u16 {
        u16::from_be_bytes([self.fixed[4], self.fixed[5]])
    }
    /// Flags (top 3 bits) and fragment offset (low 13 bits).
    pub fn flags_frag(&self) -> u16 {
        u16::from_be_bytes([self.fixed[6], self.fixed[7]])
    }
    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.fixed[8]
    }
    /// Upper-layer protocol.
    pub fn protocol(&self) -> u8 {
        self.fixed[9]
    }
    /// Header checksum.
    pub fn checksum(&self) -> u16 {
        u16::from_be_bytes([self.fixed[10], self.fixed[11]])
    }
    /// Source address.
    pub fn src(&self) -> Ipv4Addr {
        let f = self.fixed;
        Ipv4Addr::new(f[12], f[13], f[14], f[15])
    }
    /// Destination address.
    pub fn dst(&self) -> Ipv4Addr {
        let f = self.fixed;
        Ipv4Addr::new(f[16], f[17], f[18], f[19])
    }
    /// Option bytes, if all captured.
    pub fn options(&self) -> Option<&'a [u8]> {
        self.rest
            .get(..usize::from(self.header_len()).saturating_sub(20))
    }
}

/// Parses an IPv4 header.
pub fn parse_v4(b: &[u8]) -> Result<Ip<'_>, Short> {
    let v = Ipv4View::new_checked(b)?;
    // A header length below 20 is malformed; read it as 20 so decoding can go on.
    let header_len = v.header_len().max(20);
    let Some(options) = v.options() else {
        return Err(Short {
            layer: Layer::Ipv4,
            needed: usize::from(header_len),
        });
    };
    let frag = v.flags_frag();
    Ok(Ip::V4(Ipv4Header {
        header_len,
        tos: v.tos(),
        // A total length shorter than the header is malformed (or TSO): bound it.
        total_len: v.total_len().max(u16::from(header_len)),
        id: v.id(),
        reserved_flag: frag & 0x8000 != 0,
        dont_fragment: frag & 0x4000 != 0,
        more_fragments: frag & 0x2000 != 0,
        frag_offset: frag & 0x1fff,
        ttl: v.ttl(),
        protocol: v.protocol(),
        checksum: v.checksum(),
        src: v.src(),
        dst: v.dst(),
        options,
    }))
}

/// Zero-copy view of the fixed IPv6 header (40 bytes, proven by
/// [`Ipv6View::new_checked`]); extension headers are walked by [`parse_v6`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6View<'a> {
    fixed: &'a [u8; 40],
}

impl<'a> Ipv6View<'a> {
    /// A view of `b`, if it holds the fixed header.
    pub fn new_checked(b: &'a [u8]) -> Result<Self, Short> {
        match b.first_chunk::<40>() {
            Some(fixed) => Ok(Ipv6View { fixed }),
            None => Err(Short {
                layer: Layer::Ipv6,
                needed: 40,
            }),
        }
    }
    fn word0(&self) -> u32 {
        let f = self.fixed;
        u32::from_be_bytes([f[0], f[1], f[2], f[3]])
    }
    /// Traffic class.
    pub fn traffic_class(&self) -> u8 {
        ((self.word0() >> 20) & 0xff) as u8
    }
    /// Flow label (20 bits).
    pub fn flow_label(&self) -> u32 {
        self.word0() & 0x000f_ffff
    }
    /// Payload length.
    pub fn payload_len(&self) -> u16 {
        u16::from_be_bytes([self.fixed[4], self.fixed[5]])
    }
    /// Next header.
    pub fn next_header(&self) -> u8 {
        self.fixed[6]
    }
    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.fixed[7]
    }
    /// Source address.
    pub fn src(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.fixed[8..24]);
        Ipv6Addr::from(a)
    }
    /// Destination address.
    pub fn dst(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.fixed[24..40]);
        Ipv6Addr::from(a)
    }
}

/// Parses an IPv6 header and walks its extension headers.
pub fn parse_v6(b: &[u8]) -> Result<Ip<'_>, Short> {
    let v = Ipv6View::new_checked(b)?;
    let next_header = v.next_header();
    let mut h = Ipv6Header {
        traffic_class: v.traffic_class(),
        flow_label: v.flow_label(),
        payload_len: v.payload_len(),
        next_header,
        hop_limit: v.hop_limit(),
        src: v.src(),
        dst: v.dst(),
        extensions: [0; MAX_EXTENSIONS],
        ext_count: 0,
        header_len: 40,
        protocol: next_header,
        fragment: None,
    };
    let mut off = 40usize;
    let mut next = next_header;
    // Hop-by-hop, routing, fragment, destination options, AH, mobility, HIP, shim6.
    // The chain length is bounded by the packet, and each step advances at least 8.
    while matches!(next, 0 | 43 | 44 | 60 | 51 | 135 | 139 | 140) {
        let short = Short {
            layer: Layer::Ipv6Extension,
            needed: off + 8,
        };
        let (Some(&nh), Some(&len)) = (b.get(off), b.get(off + 1)) else {
            return Err(short);
        };
        let ext_len = match next {
            44 => 8,
            51 => (usize::from(len) + 2) * 4,
            _ => (usize::from(len) + 1) * 8,
        };
        if b.len() < off + ext_len {
            return Err(Short {
                layer: Layer::Ipv6Extension,
                needed: off + ext_len,
            });
        }
        if next == 44 {
            let (Some(fo), Some(id)) = (be16(b, off + 2), be32(b, off + 4)) else {
                return Err(short);
            };
            h.fragment = Some(Ipv6Fragment {
                offset: fo >> 3,
                more: fo & 1 != 0,
                id,
            });
        }
        if usize::from(h.ext_count) < MAX_EXTENSIONS {
            h.extensions[usize::from(h.ext_count)] = next;
            h.ext_count += 1;
        }
        off += ext_len;
        next = nh;
        if off > usize::from(u16::MAX) {
            break;
        }
        // A later fragment carries no further headers to walk.
        if h.fragment.is_some_and(|f| f.offset != 0) {
            break;
        }
    }
    h.header_len = u16::try_from(off).unwrap_or(u16::MAX);
    h.protocol = next;
    Ok(Ip::V6(h))
}

/// Name of an IPv6 extension header or upper-layer protocol, as tcpdump prints it
/// (its table has no name for destination options, 60: `unknown`).
pub fn protocol_name(p: u8) -> &'static str {
    match p {
        0 => "Options",
        1 => "ICMP",
        6 => "TCP",
        17 => "UDP",
        43 => "Routing",
        44 => "Fragment",
        51 => "AH",
        58 => "ICMP6",
        59 => "NONE",
        _ => "unknown",
    }
}

/// The extension headers of an IPv6 packet whose bytes (from the fixed header on)
/// are `b`, as (kind, the header's bytes), in order: those [`parse_v6`] recorded,
/// each cut at the end of `b` if the capture is.
pub fn extension_headers<'b>(b: &'b [u8], h: &Ipv6Header) -> Vec<(u8, &'b [u8])> {
    let mut off = 40usize;
    let mut out = Vec::with_capacity(usize::from(h.ext_count));
    for &kind in h.extensions.iter().take(usize::from(h.ext_count)) {
        let len_byte = usize::from(b.get(off + 1).copied().unwrap_or(0));
        let len = match kind {
            44 => 8,
            51 => (len_byte + 2) * 4,
            _ => (len_byte + 1) * 8,
        };
        let end = (off + len).min(b.len());
        out.push((kind, b.get(off..end).unwrap_or(&[])));
        off += len;
    }
    out
}

/// The final destination of an IPv6 packet whose bytes (from the fixed header on)
/// are `b`, for the TCP/UDP pseudo-header (RFC 8200 8.1): with a routing header,
/// the last address of a type 0 or 2 header, or the first segment (RFC 8754) of a
/// type 4 one; otherwise the destination address.
pub fn final_destination(b: &[u8], h: &Ipv6Header) -> Ipv6Addr {
    for (kind, hdr) in extension_headers(b, h) {
        let len = usize::from(hdr.get(1).copied().unwrap_or(0));
        if kind != 43 {
            continue;
        }
        let at = match hdr.get(2) {
            Some(0 | 2) if len >= 2 => 8 + 16 * (len / 2 - 1),
            Some(4) if len >= 2 => 8,
            _ => continue,
        };
        if let Some(a) = hdr.get(at..at + 16) {
            let mut x = [0u8; 16];
            x.copy_from_slice(a);
            return Ipv6Addr::from(x);
        }
    }
    h.dst
}
