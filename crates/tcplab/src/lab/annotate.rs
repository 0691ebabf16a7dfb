//! The annotated pcapng: the run's packets as captured, each with a comment naming the
//! state changes it caused, so Wireshark shows the kernel's states beside the packets
//! (`tshark -r FILE -T fields -e frame.number -e frame.comment`).

use std::collections::HashMap;
use std::io::{BufWriter, Write as _};
use std::path::Path;

use anyhow::Context as _;
use tcplab_core::pcap::{InterfaceDesc, InterfaceStats, OutPacket, PcapngWriter};
use tcplab_core::timeline::{Connection, Segment};
use tcplab_core::wire;

use super::probes::Captured;
use crate::clock;
use crate::probe::capture::SNAPLEN;

/// Writes `capture` to `path` with the comments of `conn`.
pub fn write_pcapng(path: &Path, capture: &Captured, conn: &Connection) -> anyhow::Result<()> {
    let comments: HashMap<(u64, u32, u16), String> = conn.segment_comments().into_iter().collect();
    let file = std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    let linktype = u16::try_from(capture.linktype).context("link type out of range")?;
    let mut writer = PcapngWriter::new(
        BufWriter::new(file),
        &InterfaceDesc {
            linktype,
            snaplen: SNAPLEN,
            name: "lo".into(),
        },
    )?;
    for (ts, frame) in &capture.frames {
        let comment =
            Segment::from_packet(capture.mono(*ts), &wire::decode(capture.linktype, frame))
                .and_then(|s| comments.get(&(s.ts_ns, s.seq, s.flags)));
        writer.write_packet(&OutPacket {
            ts_ns: *ts,
            data: frame,
            orig_len: u32::try_from(frame.len()).unwrap_or(u32::MAX),
            direction: None,
            comment: comment.map(String::as_str),
        })?;
    }
    writer.write_stats(&InterfaceStats {
        ts_ns: clock::realtime_ns(),
        start_ns: capture.start_ns,
        received: capture.frames.len() as u64,
        dropped: capture.dropped,
    })?;
    writer.flush()?;
    writer.into_inner().flush()?;
    Ok(())
}
