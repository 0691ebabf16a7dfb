//! The TCP header (RFC 9293) and its options, parsed by hand: MSS, window scale
//! (RFC 7323), SACK-permitted and SACK blocks (RFC 2018), timestamps (RFC 7323), Fast
//! Open (RFC 7413), and any other kind kept as `opt-N` with its bytes, so one unknown
//! option never hides the ones after it.

use super::{be16, be32, Layer, Short};

/// IP protocol number of TCP.
pub const PROTOCOL: u8 = 6;

/// FIN flag bit.
pub const FIN: u16 = 0x001;
/// SYN flag bit.
pub const SYN: u16 = 0x002;
/// RST flag bit.
pub const RST: u16 = 0x004;
/// PSH flag bit.
pub const PSH: u16 = 0x008;
/// ACK flag bit.
pub const ACK: u16 = 0x010;
/// URG flag bit.
pub const URG: u16 = 0x020;
/// ECN-Echo flag bit.
pub const ECE: u16 = 0x040;
/// Congestion Window Reduced flag bit.
pub const CWR: u16 = 0x080;
/// Accurate ECN (formerly NS) flag bit.
pub const AE: u16 = 0x100;

/// A decoded TCP header; options stay raw and are read with [`TcpHeader::options`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpHeader<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (meaningful only with ACK).
    pub ack: u32,
    /// Data offset in 32-bit words.
    pub data_offset: u8,
    /// The nine flag bits (FIN .. AE).
    pub flags: u16,
    /// Window field, unscaled.
    pub window: u16,
    /// Checksum as sent (on lo and veth usually not final: checksum offload).
    pub checksum: u16,
    /// Urgent pointer.
    pub urgent: u16,
    /// Option bytes (only those captured, when `options_cut`).
    pub options_raw: &'a [u8],
    /// The capture ended inside the options: `options_raw` is shorter than declared.
    pub options_cut: bool,
}

impl<'a> TcpHeader<'a> {
    /// Header length in bytes (options included).
    pub fn header_len(&self) -> usize {
        usize::from(self.data_offset) * 4
    }
    /// True if all bits of `flag` are set.
    pub fn has(&self, flag: u16) -> bool {
        self.flags & flag == flag
    }
    /// Iterates over the options.
    pub fn options(&self) -> Options<'a> {
        Options {
            bytes: self.options_raw,
            at: 0,
            done: false,
            cut: self.options_cut,
        }
    }
}

/// Zero-copy view of a TCP header. [`TcpView::new_checked`] proves the fixed 20 bytes
/// are there (as a `&[u8; 20]`), so every accessor reads constant indices of an array
/// and cannot panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpView<'a> {
    fixed: &'a [u8; 20],
    rest: &'a [u8],
}

impl<'a> TcpView<'a> {
    /// A view of `b`, if it holds at least the fixed header.
    pub fn new_checked(b: &'a [u8]) -> Result<Self, Short> {
        match b.split_first_chunk::<20>() {
            Some((fixed, rest)) => Ok(TcpView { fixed, rest }),
            None => Err(Short {
                layer: Layer::Tcp,
                needed: 20,
            }),
        }
    }
    fn u16(&self, i: usize) -> u16 {
        let f = self.fixed;
        match i {
            0 => u16::from_be_bytes([f[0], f[1]]),
            2 => u16::from_be_bytes([f[2], f[3]]),
            12 => u16::from_be_bytes([f[12], f[13]]),
            14 => u16::from_be_bytes([f[14], f[15]]),
            16 => u16::from_be_bytes([f[16], f[17]]),
            _ => u16::from_be_bytes([f[18], f[19]]),
        }
    }
    /// Source port.
    pub fn src_port(&self) -> u16 {
        self.u16(0)
    }
    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.u16(2)
    }
    /// Sequence number.
    pub fn seq(&self) -> u32 {
        let f = self.fixed;
        u32::from_be_bytes([f[4], f[5], f[6], f[7]])
    }
    /// Acknowledgment number.
    pub fn ack(&self) -> u32 {
        let f = self.fixed;
        u32::from_be_bytes([f[8], f[9], f[10], f[11]])
    }
    /// Data offset in 32-bit words as sent (may be below the minimum 5).
    pub fn data_offset(&self) -> u8 {
        self.fixed[12] >> 4
    }
    /// The nine flag bits.
    pub fn flags(&self) -> u16 {
        self.u16(12) & 0x01ff
    }
    /// Window field.
    pub fn window(&self) -> u16 {
        self.u16(14)
    }
    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        self.u16(16)
    }
    /// Urgent pointer.
    pub fn urgent(&self) -> u16 {
        self.u16(18)
    }
    /// Captured option bytes (up to the data offset), and whether the capture cut them.
    pub fn options(&self) -> (&'a [u8], bool) {
        // A data offset below 5 is malformed; read it as 5 (no options).
        let want = usize::from(self.data_offset().max(5)) * 4 - 20;
        match self.rest.get(..want) {
            Some(o) => (o, false),
            None => (self.rest, true),
        }
    }
}

/// Parses a TCP header. Options cut short by the capture are kept as far as they go
/// (`options_cut`); only a fixed header shorter than 20 bytes is an error.
pub fn parse(b: &[u8]) -> Result<TcpHeader<'_>, Short> {
    let v = TcpView::new_checked(b)?;
    let (options_raw, options_cut) = v.options();
    Ok(TcpHeader {
        src_port: v.src_port(),
        dst_port: v.dst_port(),
        seq: v.seq(),
        ack: v.ack(),
        data_offset: v.data_offset().max(5),
        flags: v.flags(),
        window: v.window(),
        checksum: v.checksum(),
        urgent: v.urgent(),
        options_raw,
        options_cut,
    })
}

/// Up to four SACK blocks, as raw bytes; iterate with [`SackBlocks::iter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SackBlocks<'a>(&'a [u8]);

impl<'a> SackBlocks<'a> {
    /// The (left edge, right edge) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + 'a {
        self.0
            .chunks_exact(8)
            .filter_map(|c| Some((be32(c, 0)?, be32(c, 4)?)))
    }
    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.0.len() / 8
    }
    /// True when there are no blocks.
    pub fn is_empty(&self) -> bool {
        self.0.len() < 8
    }
}

/// One TCP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    /// End of option list (kind 0).
    Eol,
    /// No operation (kind 1).
    Nop,
    /// Maximum segment size (kind 2).
    Mss(u16),
    /// Window scale shift (kind 3).
    WindowScale(u8),
    /// SACK permitted (kind 4).
    SackPermitted,
    /// SACK blocks (kind 5).
    Sack(SackBlocks<'a>),
    /// Timestamps (kind 8).
    Timestamps {
        /// TSval.
        val: u32,
        /// TSecr.
        ecr: u32,
    },
    /// TCP Fast Open (kind 34): empty cookie = cookie request.
    FastOpen(&'a [u8]),
    /// Any other kind, with its data bytes.
    Unknown {
        /// Option kind.
        kind: u8,
        /// Data after kind and length.
        data: &'a [u8],
    },
    /// The capture ended inside the options (the list ends here); `kind` when the
    /// kind byte itself was captured.
    Truncated {
        /// Option kind, if captured.
        kind: Option<u8>,
    },
    /// A length that does not fit (the list ends here).
    Malformed {
        /// Option kind.
        kind: u8,
        /// Offset in the option bytes.
        offset: usize,
    },
}

impl TcpOption<'_> {
    /// The option kind number.
    pub fn kind(&self) -> u8 {
        match *self {
            TcpOption::Eol => 0,
            TcpOption::Nop => 1,
            TcpOption::Mss(_) => 2,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 4,
            TcpOption::Sack(_) => 5,
            TcpOption::Timestamps { .. } => 8,
            TcpOption::FastOpen(_) => 34,
            TcpOption::Unknown { kind, .. } | TcpOption::Malformed { kind, .. } => kind,
            TcpOption::Truncated { kind } => kind.unwrap_or(0),
        }
    }
}

/// Iterator over TCP options; stops after EOL or a malformed option.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    bytes: &'a [u8],
    at: usize,
    done: bool,
    cut: bool,
}

impl<'a> Iterator for Options<'a> {
    type Item = TcpOption<'a>;

    fn next(&mut self) -> Option<TcpOption<'a>> {
        if self.done {
            return None;
        }
        let Some(&kind) = self.bytes.get(self.at) else {
            self.done = true;
            return self.cut.then_some(TcpOption::Truncated { kind: None });
        };
        let start = self.at;
        match kind {
            0 => {
                self.done = true;
                return Some(TcpOption::Eol);
            }
            1 => {
                self.at += 1;
                return Some(TcpOption::Nop);
            }
            _ => {}
        }
        let malformed = if self.cut {
            TcpOption::Truncated { kind: Some(kind) }
        } else {
            TcpOption::Malformed {
                kind,
                offset: start,
            }
        };
        let Some(&len) = self.bytes.get(start + 1) else {
            self.done = true;
            return Some(if self.cut {
                TcpOption::Truncated { kind: None }
            } else {
                malformed
            });
        };
        let len = usize::from(len);
        if len < 2 {
            self.done = true;
            return Some(TcpOption::Malformed {
                kind,
                offset: start,
            });
        }
        let Some(data) = self.bytes.get(start + 2..start + len) else {
            self.done = true;
            return Some(malformed);
        };
        self.at = start + len;
        // A known kind with the wrong length is malformed, as Wireshark reports it.
        let opt = match (kind, len) {
            (2, 4) => TcpOption::Mss(be16(data, 0).unwrap_or(0)),
            (3, 3) => TcpOption::WindowScale(data[0]),
            (4, 2) => TcpOption::SackPermitted,
            (5, _) if (len - 2) % 8 == 0 && len > 2 => TcpOption::Sack(SackBlocks(data)),
            (8, 10) => TcpOption::Timestamps {
                val: be32(data, 0).unwrap_or(0),
                ecr: be32(data, 4).unwrap_or(0),
            },
            (34, _) => TcpOption::FastOpen(data),
            (2 | 3 | 4 | 5 | 8, _) => {
                self.done = true;
                malformed
            }
            _ => TcpOption::Unknown { kind, data },
        };
        Some(opt)
    }
}

/// The flag letters tcpdump prints inside `Flags [..]` (`S.` for SYN+ACK).
pub fn tcpdump_flags(flags: u16, out: &mut Vec<u8>) {
    const LETTERS: [(u16, u8); 9] = [
        (FIN, b'F'),
        (SYN, b'S'),
        (RST, b'R'),
        (PSH, b'P'),
        (ACK, b'.'),
        (URG, b'U'),
        (ECE, b'E'),
        (CWR, b'W'),
        (AE, b'e'),
    ];
    let before = out.len();
    for (bit, letter) in LETTERS {
        if flags & bit != 0 {
            out.push(letter);
        }
    }
    if out.len() == before {
        out.extend_from_slice(b"none");
    }
}
