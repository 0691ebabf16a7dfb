//! The packet views: tcpdump's `-nn` one-line view (and `-v`), its `-A`, `-X` and
//! `-XX` hex/ASCII layouts, and JSON Lines.
//!
//! A [`Renderer`] keeps the per-connection state that relative sequence numbers need,
//! and writes into a caller-owned `Vec<u8>` so that printing a packet allocates nothing.

use super::{ascii, hex_and_ascii, jsonl, line};
use crate::flow::{Endpoint, FlowKey, Relative, SegmentNumbers, TcpdumpSeq, WiresharkSeq};
use crate::pcap::PacketDirection;
use crate::wire::{self, Packet};

/// Payload views after the packet line (tcpdump's `-A`, `-X`, `-XX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dump {
    /// No payload dump.
    #[default]
    None,
    /// `-A`: ASCII from the network header on.
    Ascii,
    /// `-X`: hex and ASCII from the network header on.
    Hex,
    /// `-XX`: hex and ASCII of the whole frame, link header included.
    HexLink,
}

/// How to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ViewOptions {
    /// `-S`: absolute sequence numbers.
    pub absolute: bool,
    /// `-v`: IP header details and TCP checksum.
    pub verbose: bool,
    /// Payload dump after the line.
    pub dump: Dump,
    /// `--json`: one JSON object per line instead of text.
    pub json: bool,
    /// Offset of local time from UTC, seconds (tcpdump prints local time).
    pub utc_offset_secs: i32,
}

/// One captured frame, as a probe or a file reader produces it.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// pcap link type of `data`.
    pub linktype: u32,
    /// Captured bytes.
    pub data: &'a [u8],
    /// Length on the wire.
    pub orig_len: u32,
    /// Direction, when the capture knows it.
    pub direction: Option<PacketDirection>,
    /// The packet's comment (pcapng `opt_comment`), e.g. the state changes
    /// `tcplab lab --pcapng` noted.
    pub comment: Option<&'a [u8]>,
}

/// Renders frames one after the other, remembering connections for relative numbers.
#[derive(Debug, Default)]
pub struct Renderer {
    opts: ViewOptions,
    tcpdump: TcpdumpSeq,
    wireshark: WiresharkSeq,
    count: u64,
    ifnames: Vec<(u32, String)>,
}

/// Numbers of one TCP segment as shown: absolute and relative by both rules.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Numbers {
    /// tcpdump's view (equal to absolute under `-S`).
    pub tcpdump: Relative,
    /// Wireshark's relative numbers.
    pub wireshark: Relative,
}

impl Renderer {
    /// A renderer with these options.
    pub fn new(opts: ViewOptions) -> Self {
        Renderer {
            opts,
            ..Renderer::default()
        }
    }

    /// Names the interface with index `index` (Linux cooked v2 lines start with it).
    pub fn set_interface_name(&mut self, index: u32, name: &str) {
        self.ifnames.retain(|(i, _)| *i != index);
        self.ifnames.push((index, name.to_owned()));
    }

    /// Frames rendered so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Appends the view of `frame` (ending with a newline) to `out`.
    pub fn render(&mut self, frame: &Frame<'_>, out: &mut Vec<u8>) {
        self.count += 1;
        let pkt = wire::decode(frame.linktype, frame.data);
        let numbers = self.numbers(&pkt);
        if self.opts.json {
            jsonl::write(frame, &pkt, numbers.as_ref(), self.count, out);
            return;
        }
        line::write(
            frame,
            &pkt,
            numbers.as_ref(),
            &self.opts,
            &self.ifnames,
            out,
        );
        if let Some(comment) = frame.comment {
            // On its own line, so the packet line keeps tcpdump's layout.
            out.extend_from_slice(b"\n    comment: ");
            out.extend(comment.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
        }
        // When the capture ends inside the TCP options, tcpdump's printer bails out
        // (longjmp) and it dumps the whole frame, link header included; for the other
        // cut headers its printers return normally and the dump starts at IP.
        let header_cut = pkt
            .truncated
            .is_some_and(|t| t.layer == wire::Layer::TcpOptions);
        let from_net = if header_cut {
            frame.data
        } else {
            pkt.network_bytes()
        };
        match self.opts.dump {
            Dump::None => {}
            Dump::Ascii => ascii(from_net, out),
            Dump::Hex => hex_and_ascii(from_net, out),
            Dump::HexLink => hex_and_ascii(frame.data, out),
        }
        out.push(b'\n');
    }

    fn numbers(&mut self, pkt: &Packet<'_>) -> Option<Numbers> {
        let (ip, tcp) = (pkt.ip.as_ref()?, pkt.tcp.as_ref()?);
        let src = Endpoint {
            addr: ip.src(),
            port: tcp.src_port,
        };
        let dst = Endpoint {
            addr: ip.dst(),
            port: tcp.dst_port,
        };
        let (key, dir) = FlowKey::new(src, dst);
        let seg = SegmentNumbers {
            flags: tcp.flags,
            seq: tcp.seq,
            ack: tcp.ack,
        };
        let wireshark = self.wireshark.observe(key, dir, seg);
        let tcpdump = if self.opts.absolute {
            Relative {
                seq: tcp.seq,
                ack: tcp.ack,
                sack_base: 0,
            }
        } else {
            self.tcpdump.observe(key, dir, seg)
        };
        Some(Numbers { tcpdump, wireshark })
    }
}

/// Appends `HH:MM:SS.uuuuuu` for `ts_ns` shifted by `offset` seconds.
pub fn write_time(ts_ns: u64, offset: i32, out: &mut Vec<u8>) {
    let secs = (ts_ns / 1_000_000_000) as i64 + i64::from(offset);
    let day = secs.rem_euclid(86_400) as u32;
    let micros = ((ts_ns % 1_000_000_000) / 1000) as u32;
    let two = |v: u32, out: &mut Vec<u8>| {
        out.push(b'0' + (v / 10) as u8);
        out.push(b'0' + (v % 10) as u8);
    };
    two(day / 3600, out);
    out.push(b':');
    two(day / 60 % 60, out);
    out.push(b':');
    two(day % 60, out);
    out.push(b'.');
    let mut m = micros;
    let mut digits = [b'0'; 6];
    for d in digits.iter_mut().rev() {
        *d = b'0' + (m % 10) as u8;
        m /= 10;
    }
    out.extend_from_slice(&digits);
}

/// Appends a decimal number.
#[inline]
pub(crate) fn num(out: &mut Vec<u8>, v: impl itoa::Integer) {
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(v).as_bytes());
}
