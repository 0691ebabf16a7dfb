//! Reading pcap and pcapng from a byte slice, one record at a time, zero-copy.

use super::PcapError;

const PCAP_MAGIC_US: u32 = 0xa1b2_c3d4;
const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
const IDB: u32 = 1;
const OBSOLETE_PB: u32 = 2;
const SPB: u32 = 3;
const ISB: u32 = 5;
const EPB: u32 = 6;

/// Which file format was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Classic pcap.
    Pcap {
        /// Timestamps in nanoseconds (magic `a1b23c4d`) rather than microseconds.
        nanos: bool,
    },
    /// pcapng.
    Pcapng,
}

/// An interface described in the file (pcap has exactly one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// pcap link type.
    pub linktype: u32,
    /// Snap length (0 = unlimited).
    pub snaplen: u32,
    /// `if_name`, if given.
    pub name: Option<String>,
    /// Timestamp unit as (multiply, divide-by-shift): ns = ts * mul / 10^div or >> shift.
    resolution: Resolution,
    /// Drop count from the last statistics block, if any.
    pub dropped: Option<u64>,
    /// Received count from the last statistics block, if any.
    pub received: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolution {
    /// 10^-n seconds.
    Decimal(u8),
    /// 2^-n seconds.
    Binary(u8),
}

impl Resolution {
    fn to_ns(self, ts: u64) -> u64 {
        match self {
            Resolution::Decimal(n) if n <= 9 => ts.saturating_mul(10u64.pow(u32::from(9 - n))),
            Resolution::Decimal(n) => {
                let div = 10u128.checked_pow(u32::from(n - 9)).unwrap_or(u128::MAX);
                (u128::from(ts) / div) as u64
            }
            Resolution::Binary(n) => {
                let ns = u128::from(ts) * 1_000_000_000;
                u64::try_from(ns.checked_shr(u32::from(n)).unwrap_or(0)).unwrap_or(u64::MAX)
            }
        }
    }
}

/// One packet from the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Byte offset of the record (block) in the file.
    pub offset: usize,
    /// Interface index (always 0 for pcap).
    pub interface: u32,
    /// Link type of that interface.
    pub linktype: u32,
    /// Timestamp, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Original length on the wire.
    pub orig_len: u32,
    /// Captured bytes.
    pub data: &'a [u8],
    /// pcapng `epb_flags` (direction in bits 0-1), if present.
    pub flags: Option<u32>,
    /// First `opt_comment`, if present.
    pub comment: Option<&'a [u8]>,
}

/// Reads records from a pcap or pcapng file held in memory.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    format: Format,
    big_endian: bool,
    interfaces: Vec<Interface>,
    failed: bool,
}

impl<'a> Reader<'a> {
    /// Recognises the format from the first bytes and reads the file header.
    pub fn new(bytes: &'a [u8]) -> Result<Self, PcapError> {
        let mut r = Reader {
            bytes,
            pos: 0,
            format: Format::Pcapng,
            big_endian: false,
            interfaces: Vec::new(),
            failed: false,
        };
        let Some(magic_le) = r.u32_le_at(0) else {
            return Err(PcapError::at(
                0,
                format!(
                    "file is {} bytes, too short for a capture header",
                    bytes.len()
                ),
            ));
        };
        let magic_be = magic_le.swap_bytes();
        if magic_le == PCAPNG_SHB {
            // The section header block is parsed as the first block by `next`.
            return Ok(r);
        }
        let (nanos, big_endian) = match (magic_le, magic_be) {
            (PCAP_MAGIC_US, _) => (false, false),
            (PCAP_MAGIC_NS, _) => (true, false),
            (_, PCAP_MAGIC_US) => (false, true),
            (_, PCAP_MAGIC_NS) => (true, true),
            _ => {
                return Err(PcapError::at(
                    0,
                    format!("not a pcap or pcapng file (magic {magic_le:08x})"),
                ))
            }
        };
        r.big_endian = big_endian;
        r.format = Format::Pcap { nanos };
        let (Some(snaplen), Some(linktype)) = (r.u32_at(16), r.u32_at(20)) else {
            return Err(PcapError::at(
                0,
                "pcap file header cut short (needs 24 bytes)",
            ));
        };
        r.interfaces.push(Interface {
            // The upper bits of the link type field carry FCS information.
            linktype: linktype & 0x0fff_ffff,
            snaplen,
            name: None,
            resolution: Resolution::Decimal(if nanos { 9 } else { 6 }),
            dropped: None,
            received: None,
        });
        r.pos = 24;
        Ok(r)
    }

    /// The file format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Where the next record or block starts (tests check that a record's bytes
    /// lie within the block just read).
    #[cfg(test)]
    pub(super) fn position(&self) -> usize {
        self.pos
    }

    /// Interfaces seen so far (pcapng declares them as it goes).
    pub fn interfaces(&self) -> &[Interface] {
        &self.interfaces
    }

    fn u32_le_at(&self, at: usize) -> Option<u32> {
        let s = self.bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u32_at(&self, at: usize) -> Option<u32> {
        let v = self.u32_le_at(at)?;
        Some(if self.big_endian { v.swap_bytes() } else { v })
    }
    fn u16_at(&self, at: usize) -> Option<u16> {
        let s = self.bytes.get(at..at.checked_add(2)?)?;
        let v = u16::from_le_bytes([s[0], s[1]]);
        Some(if self.big_endian { v.swap_bytes() } else { v })
    }
    fn u64_at(&self, at: usize) -> Option<u64> {
        let hi = u64::from(self.u32_at(at)?);
        let lo = u64::from(self.u32_at(at + 4)?);
        // pcapng counters are one 64-bit value in section byte order.
        Some(if self.big_endian {
            (hi << 32) | lo
        } else {
            (lo << 32) | hi
        })
    }

    /// The 32-bit field `off` bytes into a block body, if the body holds all of it.
    /// Fixed fields are read through this (or after a check against the body's
    /// end) so that a short block never reads its own trailing length or the next
    /// block as a field, and no length from the file is ever subtracted unchecked.
    fn field_u32(&self, body: &std::ops::Range<usize>, off: usize) -> Option<u32> {
        (off.checked_add(4)? <= body.len()).then(|| self.u32_at(body.start + off))?
    }
    /// The 16-bit field `off` bytes into a block body, if the body holds all of it.
    fn field_u16(&self, body: &std::ops::Range<usize>, off: usize) -> Option<u16> {
        (off.checked_add(2)? <= body.len()).then(|| self.u16_at(body.start + off))?
    }

    /// The next packet, `None` at a clean end of file, or an error (after which the
    /// reader returns `None`).
    pub fn next_record(&mut self) -> Option<Result<Record<'a>, PcapError>> {
        if self.failed {
            return None;
        }
        let result = match self.format {
            Format::Pcap { .. } => self.next_pcap(),
            Format::Pcapng => self.next_pcapng(),
        };
        if matches!(result, Some(Err(_))) {
            self.failed = true;
        }
        result
    }

    fn next_pcap(&mut self) -> Option<Result<Record<'a>, PcapError>> {
        let at = self.pos;
        if at >= self.bytes.len() {
            return None;
        }
        let (Some(sec), Some(frac), Some(caplen), Some(orig_len)) = (
            self.u32_at(at),
            self.u32_at(at + 4),
            self.u32_at(at + 8),
            self.u32_at(at + 12),
        ) else {
            return Some(Err(PcapError::at(
                at,
                format!(
                    "record header cut short ({} of 16 bytes)",
                    self.bytes.len() - at
                ),
            )));
        };
        let iface = &self.interfaces[0];
        if caplen > 0x0400_0000 {
            return Some(Err(PcapError::at(
                at,
                format!("record claims {caplen} captured bytes, more than any snap length"),
            )));
        }
        let start = at + 16;
        let end = start + caplen as usize;
        let Some(data) = self.bytes.get(start..end) else {
            return Some(Err(PcapError::at(
                at,
                format!(
                    "record data cut short ({} of {caplen} bytes)",
                    self.bytes.len() - start
                ),
            )));
        };
        self.pos = end;
        let ts_ns = u64::from(sec) * 1_000_000_000 + iface.resolution.to_ns(u64::from(frac));
        Some(Ok(Record {
            offset: at,
            interface: 0,
            linktype: iface.linktype,
            ts_ns,
            orig_len,
            data,
            flags: None,
            comment: None,
        }))
    }

    fn next_pcapng(&mut self) -> Option<Result<Record<'a>, PcapError>> {
        loop {
            let at = self.pos;
            if at >= self.bytes.len() {
                return None;
            }
            let Some(raw_type) = self.u32_le_at(at) else {
                return Some(Err(PcapError::at(at, "block header cut short")));
            };
            if raw_type == PCAPNG_SHB {
                match self.bytes.get(at + 8..at + 12) {
                    Some(m) => {
                        let m = u32::from_le_bytes([m[0], m[1], m[2], m[3]]);
                        if m == BYTE_ORDER_MAGIC {
                            self.big_endian = false;
                        } else if m.swap_bytes() == BYTE_ORDER_MAGIC {
                            self.big_endian = true;
                        } else {
                            return Some(Err(PcapError::at(
                                at,
                                format!("section header has a bad byte-order magic {m:08x}"),
                            )));
                        }
                        // A new section starts with a new set of interfaces.
                        self.interfaces.clear();
                    }
                    None => {
                        return Some(Err(PcapError::at(at, "section header cut short")));
                    }
                }
            }
            let (Some(btype), Some(len)) = (self.u32_at(at), self.u32_at(at + 4)) else {
                return Some(Err(PcapError::at(at, "block header cut short")));
            };
            let len = len as usize;
            if len < 12 || len % 4 != 0 {
                return Some(Err(PcapError::at(
                    at,
                    format!("block length {len} is not a multiple of 4 of at least 12"),
                )));
            }
            let Some(end) = at.checked_add(len).filter(|&e| e <= self.bytes.len()) else {
                return Some(Err(PcapError::at(
                    at,
                    format!(
                        "block of {len} bytes cut short ({} bytes left in the file)",
                        self.bytes.len() - at
                    ),
                )));
            };
            if self.u32_at(end - 4) != Some(len as u32) {
                return Some(Err(PcapError::at(
                    at,
                    "block's trailing length does not match its leading length",
                )));
            }
            self.pos = end;
            let body = at + 8..end - 4;
            match btype {
                IDB => {
                    if let Err(e) = self.read_idb(at, body) {
                        return Some(Err(e));
                    }
                }
                EPB | OBSOLETE_PB => return Some(self.read_epb(at, btype, body)),
                SPB => return Some(self.read_spb(at, body)),
                ISB => self.read_isb(body),
                _ => {} // Name resolution, custom and unknown blocks: skip.
            }
        }
    }

    fn options(&self, range: std::ops::Range<usize>) -> OptionIter<'_, 'a> {
        OptionIter {
            reader: self,
            at: range.start,
            end: range.end,
        }
    }

    fn read_idb(&mut self, at: usize, body: std::ops::Range<usize>) -> Result<(), PcapError> {
        let (Some(linktype), Some(snaplen)) = (self.field_u16(&body, 0), self.field_u32(&body, 4))
        else {
            return Err(PcapError::at(at, "interface description block too short"));
        };
        let mut iface = Interface {
            linktype: u32::from(linktype),
            snaplen,
            name: None,
            resolution: Resolution::Decimal(6),
            dropped: None,
            received: None,
        };
        for (code, _, value) in self.options(body.start + 8..body.end) {
            match (code, value) {
                (2, v) => iface.name = Some(String::from_utf8_lossy(v).into_owned()),
                (9, [r, ..]) => {
                    iface.resolution = if r & 0x80 != 0 {
                        Resolution::Binary(r & 0x7f)
                    } else {
                        Resolution::Decimal(*r)
                    }
                }
                _ => {}
            }
        }
        self.interfaces.push(iface);
        Ok(())
    }

    fn iface(&self, at: usize, id: u32) -> Result<&Interface, PcapError> {
        self.interfaces.get(id as usize).ok_or_else(|| {
            PcapError::at(
                at,
                format!("packet refers to interface {id}, which was not described"),
            )
        })
    }

    fn read_epb(
        &self,
        at: usize,
        btype: u32,
        body: std::ops::Range<usize>,
    ) -> Result<Record<'a>, PcapError> {
        let b = body.start;
        let short = || PcapError::at(at, "packet block too short for its fixed fields");
        let id = if btype == EPB {
            self.field_u32(&body, 0).ok_or_else(short)?
        } else {
            u32::from(self.field_u16(&body, 0).ok_or_else(short)?)
        };
        let (Some(hi), Some(lo), Some(caplen), Some(orig_len)) = (
            self.field_u32(&body, 4),
            self.field_u32(&body, 8),
            self.field_u32(&body, 12),
            self.field_u32(&body, 16),
        ) else {
            return Err(short());
        };
        let data_start = b + 20;
        let data_end = data_start.saturating_add(caplen as usize);
        let padded_end = data_start.saturating_add((caplen as usize).div_ceil(4) * 4);
        if padded_end > body.end {
            return Err(PcapError::at(
                at,
                format!("packet claims {caplen} captured bytes, more than its block holds"),
            ));
        }
        let iface = self.iface(at, id)?;
        let ts = (u64::from(hi) << 32) | u64::from(lo);
        let mut rec = Record {
            offset: at,
            interface: id,
            linktype: iface.linktype,
            ts_ns: iface.resolution.to_ns(ts),
            orig_len,
            data: &self.bytes[data_start..data_end],
            flags: None,
            comment: None,
        };
        for (code, start, value) in self.options(padded_end..body.end) {
            match code {
                1 if rec.comment.is_none() => rec.comment = Some(value),
                2 if value.len() == 4 => rec.flags = self.u32_at(start),
                _ => {}
            }
        }
        Ok(rec)
    }

    fn read_spb(&self, at: usize, body: std::ops::Range<usize>) -> Result<Record<'a>, PcapError> {
        // The body is the 4-byte original length then the packet data: a block of
        // fewer than 16 bytes has no room for the length (the 4 bytes after an empty
        // body are the trailing length, not a field).
        let Some(orig_len) = self.field_u32(&body, 0) else {
            return Err(PcapError::at(
                at,
                format!(
                    "simple packet block of {} bytes is too short (at least 16)",
                    body.len() + 12
                ),
            ));
        };
        let iface = self.iface(at, 0)?;
        let data_start = body.start + 4;
        let caplen = (orig_len as usize).min(body.end - data_start);
        let caplen = if iface.snaplen > 0 {
            caplen.min(iface.snaplen as usize)
        } else {
            caplen
        };
        Ok(Record {
            offset: at,
            interface: 0,
            linktype: iface.linktype,
            ts_ns: 0,
            orig_len,
            data: &self.bytes[data_start..data_start + caplen],
            flags: None,
            comment: None,
        })
    }

    fn read_isb(&mut self, body: std::ops::Range<usize>) {
        // Interface id, then a 64-bit timestamp, then options.
        if body.len() < 12 {
            return;
        }
        let Some(id) = self.field_u32(&body, 0) else {
            return;
        };
        let mut received = None;
        let mut dropped = None;
        let mut at = body.start + 12;
        // Walk options by hand: values are 64-bit counters in section byte order.
        while at + 4 <= body.end {
            let (Some(code), Some(len)) = (self.u16_at(at), self.u16_at(at + 2)) else {
                break;
            };
            if code == 0 || at + 4 + usize::from(len) > body.end {
                break;
            }
            match (code, len) {
                (4, 8) => received = self.u64_at(at + 4),
                (5, 8) => dropped = self.u64_at(at + 4),
                _ => {}
            }
            at += 4 + usize::from(len).div_ceil(4) * 4;
        }
        if let Some(iface) = self.interfaces.get_mut(id as usize) {
            iface.received = received.or(iface.received);
            iface.dropped = dropped.or(iface.dropped);
        }
    }
}

/// Iterates over pcapng options as (code, value offset, value) until `opt_endofopt`
/// or the end.
struct OptionIter<'r, 'a> {
    reader: &'r Reader<'a>,
    at: usize,
    end: usize,
}

impl<'a> Iterator for OptionIter<'_, 'a> {
    type Item = (u16, usize, &'a [u8]);
    fn next(&mut self) -> Option<(u16, usize, &'a [u8])> {
        // An option header that does not fit before the end is the end (a block
        // whose fixed fields overrun its body yields an empty range here).
        if self.at.checked_add(4)? > self.end {
            return None;
        }
        let code = self.reader.u16_at(self.at)?;
        let len = usize::from(self.reader.u16_at(self.at + 2)?);
        let start = self.at + 4;
        if code == 0 || start + len > self.end {
            return None;
        }
        self.at = start + len.div_ceil(4) * 4;
        let bytes: &'a [u8] = self.reader.bytes;
        bytes.get(start..start + len).map(|v| (code, start, v))
    }
}
