//! Captured frames to timeline segments, through the wire decoder.

use std::net::SocketAddr;

use super::Segment;
use crate::render::line;
use crate::wire::{self, Packet};

/// Payload bytes kept per segment for previews.
pub const PREVIEW_BYTES: usize = 64;

impl Segment {
    /// The TCP segment in a decoded frame captured at `ts_ns`, if it holds a complete
    /// IP and TCP header. Options are kept in tcpdump's words.
    pub fn from_packet(ts_ns: u64, pkt: &Packet<'_>) -> Option<Segment> {
        let ip = pkt.ip.as_ref()?;
        let tcp = pkt.tcp.as_ref()?;
        let mut options = Vec::new();
        for opt in tcp.options() {
            let mut text = Vec::new();
            let ok = line::option(opt, 0, &mut text);
            options.push(String::from_utf8_lossy(&text).into_owned());
            if !ok {
                break;
            }
        }
        Some(Segment {
            ts_ns,
            src: SocketAddr::new(ip.src(), tcp.src_port),
            dst: SocketAddr::new(ip.dst(), tcp.dst_port),
            flags: tcp.flags,
            seq: tcp.seq,
            ack: tcp.ack,
            window: tcp.window,
            len: u32::try_from(pkt.payload_len).unwrap_or(u32::MAX),
            payload: pkt.payload[..pkt.payload.len().min(PREVIEW_BYTES)].to_vec(),
            options,
        })
    }
}

/// Decodes captured frames of link type `linktype`, given as (timestamp ns, bytes), and
/// keeps the TCP segments. Frames that are not TCP, or too short, are skipped.
pub fn segments_from_frames<'a>(
    linktype: u32,
    frames: impl IntoIterator<Item = (u64, &'a [u8])>,
) -> Vec<Segment> {
    frames
        .into_iter()
        .filter_map(|(ts, bytes)| Segment::from_packet(ts, &wire::decode(linktype, bytes)))
        .collect()
}
