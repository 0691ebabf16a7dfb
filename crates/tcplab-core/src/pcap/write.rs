//! Writing pcapng: one section, one interface (if_tsresol 9: nanoseconds), enhanced
//! packet blocks with direction flags and an optional comment, and an interface
//! statistics block with the kernel's counters at the end.

use std::io::{self, Write};

use super::PacketDirection;

const SHB: u32 = 0x0a0d_0d0a;
const IDB: u32 = 1;
const ISB: u32 = 5;
const EPB: u32 = 6;

/// The interface a file's packets were captured on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceDesc {
    /// pcap link type.
    pub linktype: u16,
    /// Snap length.
    pub snaplen: u32,
    /// Interface name (`if_name`).
    pub name: String,
}

/// One packet to write.
#[derive(Debug, Clone, Copy)]
pub struct OutPacket<'a> {
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Captured bytes.
    pub data: &'a [u8],
    /// Length on the wire.
    pub orig_len: u32,
    /// Direction, written as `epb_flags` when known.
    pub direction: Option<PacketDirection>,
    /// A comment (`opt_comment`) shown by Wireshark and `tshark -e frame.comment`.
    pub comment: Option<&'a str>,
}

/// Counters for the interface statistics block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InterfaceStats {
    /// When the statistics were taken (ns since the epoch).
    pub ts_ns: u64,
    /// When capture started (ns since the epoch).
    pub start_ns: u64,
    /// Packets the kernel delivered to the socket.
    pub received: u64,
    /// Packets the kernel dropped because the ring was full.
    pub dropped: u64,
}

/// Writes a pcapng file to `W` (wrap files in a `BufWriter`).
#[derive(Debug)]
pub struct PcapngWriter<W: Write> {
    out: W,
    block: Vec<u8>,
}

fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

impl<W: Write> PcapngWriter<W> {
    /// Writes the section header and the interface description.
    pub fn new(out: W, iface: &InterfaceDesc) -> io::Result<Self> {
        let mut w = PcapngWriter {
            out,
            block: Vec::with_capacity(65536 + 64),
        };
        // Section header: byte-order magic, version 1.0, section length unknown (-1).
        w.begin(SHB);
        w.block.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
        w.block.extend_from_slice(&1u16.to_le_bytes());
        w.block.extend_from_slice(&0u16.to_le_bytes());
        w.block.extend_from_slice(&(-1i64).to_le_bytes());
        w.option(4, b"tcplab"); // shb_userappl
        w.end_options();
        w.finish()?;
        // Interface description: link type, snap length, if_name, if_tsresol = 9.
        w.begin(IDB);
        w.block.extend_from_slice(&iface.linktype.to_le_bytes());
        w.block.extend_from_slice(&0u16.to_le_bytes());
        w.block.extend_from_slice(&iface.snaplen.to_le_bytes());
        w.option(2, iface.name.as_bytes());
        w.option(9, &[9]);
        w.end_options();
        w.finish()?;
        Ok(w)
    }

    fn begin(&mut self, btype: u32) {
        self.block.clear();
        self.block.extend_from_slice(&btype.to_le_bytes());
        self.block.extend_from_slice(&0u32.to_le_bytes()); // length, patched in finish
    }

    fn option(&mut self, code: u16, value: &[u8]) {
        let len = value.len().min(usize::from(u16::MAX) - 3);
        self.block.extend_from_slice(&code.to_le_bytes());
        self.block.extend_from_slice(&(len as u16).to_le_bytes());
        self.block.extend_from_slice(&value[..len]);
        self.block.resize(self.block.len() + pad4(len) - len, 0);
    }

    fn end_options(&mut self) {
        self.block.extend_from_slice(&[0, 0, 0, 0]);
    }

    fn finish(&mut self) -> io::Result<()> {
        let total = (self.block.len() + 4) as u32;
        self.block[4..8].copy_from_slice(&total.to_le_bytes());
        self.block.extend_from_slice(&total.to_le_bytes());
        self.out.write_all(&self.block)
    }

    /// Writes one enhanced packet block.
    pub fn write_packet(&mut self, p: &OutPacket<'_>) -> io::Result<()> {
        self.begin(EPB);
        self.block.extend_from_slice(&0u32.to_le_bytes()); // interface 0
        self.block
            .extend_from_slice(&((p.ts_ns >> 32) as u32).to_le_bytes());
        self.block
            .extend_from_slice(&(p.ts_ns as u32).to_le_bytes());
        self.block
            .extend_from_slice(&(p.data.len() as u32).to_le_bytes());
        self.block.extend_from_slice(&p.orig_len.to_le_bytes());
        self.block.extend_from_slice(p.data);
        self.block
            .resize(self.block.len() + pad4(p.data.len()) - p.data.len(), 0);
        let has_options = p.direction.is_some() || p.comment.is_some();
        if let Some(c) = p.comment {
            self.option(1, c.as_bytes());
        }
        if let Some(d) = p.direction {
            self.option(2, &d.epb_flags().to_le_bytes());
        }
        if has_options {
            self.end_options();
        }
        self.finish()
    }

    /// Writes the interface statistics block (call once, at the end).
    pub fn write_stats(&mut self, s: &InterfaceStats) -> io::Result<()> {
        fn ts(v: u64) -> [u8; 8] {
            let mut b = [0u8; 8];
            b[..4].copy_from_slice(&((v >> 32) as u32).to_le_bytes());
            b[4..].copy_from_slice(&(v as u32).to_le_bytes());
            b
        }
        self.begin(ISB);
        self.block.extend_from_slice(&0u32.to_le_bytes());
        self.block.extend_from_slice(&ts(s.ts_ns));
        self.option(2, &ts(s.start_ns)); // isb_starttime
        self.option(3, &ts(s.ts_ns)); // isb_endtime
        self.option(4, &s.received.to_le_bytes()); // isb_ifrecv
        self.option(5, &s.dropped.to_le_bytes()); // isb_ifdrop
        self.end_options();
        self.finish()
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The underlying writer.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Gives back the underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}
