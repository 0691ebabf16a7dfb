//! The annotated pcapng: packets as captured, each with a comment naming the state
//! changes it caused, so Wireshark shows the states beside the packets
//! (`tshark -r FILE -T fields -e frame.number -e frame.comment`). `lab --pcapng` writes
//! its capture with the kernel's states; `replay --pcapng` writes the packets it read
//! with the states it inferred (each comment says `inferred`).

use std::collections::HashMap;
use std::io::{BufWriter, Write as _};
use std::path::Path;

use anyhow::Context as _;
use tcplab_core::pcap::{InterfaceDesc, InterfaceStats, OutPacket, PacketDirection, PcapngWriter};
use tcplab_core::timeline::{Connection, Segment};
use tcplab_core::wire;

use crate::probe::capture::SNAPLEN;

/// One packet to write.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// Its time in the file: ns since the Unix epoch.
    pub ts_ns: u64,
    /// Its time on the timeline's clock, which keys the comments (the lab's timelines
    /// run on CLOCK_MONOTONIC; replay's on the file's own time).
    pub timeline_ns: u64,
    /// The frame, with the link header of the file's link type.
    pub data: &'a [u8],
    /// Length on the wire.
    pub orig_len: u32,
    /// Direction, when the source knew it.
    pub direction: Option<PacketDirection>,
    /// A comment the packet already had: kept, before the states' comment.
    pub comment: Option<&'a str>,
}

/// The interface the packets were captured on.
#[derive(Debug, Clone)]
pub struct Interface {
    /// pcap link type of every packet.
    pub linktype: u32,
    /// Its name (`if_name`).
    pub name: String,
    /// Capture statistics, when known (the lab's capture; a replayed file has none).
    pub stats: Option<InterfaceStats>,
}

/// Writes `packets` to `path` as pcapng, each commented with the state changes it
/// caused in `conns`.
pub fn write_pcapng<'a>(
    path: &Path,
    iface: &Interface,
    packets: impl IntoIterator<Item = Packet<'a>>,
    conns: &[Connection],
) -> anyhow::Result<()> {
    let comments: HashMap<(u64, u32, u16), String> = conns
        .iter()
        .flat_map(Connection::segment_comments)
        .collect();
    let file = std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    let linktype = u16::try_from(iface.linktype).context("link type out of range")?;
    let mut writer = PcapngWriter::new(
        BufWriter::new(file),
        &InterfaceDesc {
            linktype,
            snaplen: SNAPLEN,
            name: iface.name.clone(),
        },
    )?;
    for p in packets {
        let states = Segment::from_packet(p.timeline_ns, &wire::decode(iface.linktype, p.data))
            .and_then(|s| comments.get(&(s.ts_ns, s.seq, s.flags)));
        let comment = match (p.comment, states) {
            (Some(old), Some(new)) => Some(format!("{old}; {new}")),
            (old, new) => old.or(new.map(String::as_str)).map(str::to_string),
        };
        writer.write_packet(&OutPacket {
            ts_ns: p.ts_ns,
            data: p.data,
            orig_len: p.orig_len,
            direction: p.direction,
            comment: comment.as_deref(),
        })?;
    }
    if let Some(stats) = &iface.stats {
        writer.write_stats(stats)?;
    }
    writer.flush()?;
    writer
        .into_inner()
        .flush()
        .with_context(|| format!("write {}", path.display()))?;
    Ok(())
}
