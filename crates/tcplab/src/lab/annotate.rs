//! The lab's annotated pcapng: its capture, commented with the kernel's states by
//! [`crate::annotate`] (shared with `replay --pcapng`).

use std::path::Path;

use tcplab_core::pcap::InterfaceStats;
use tcplab_core::timeline::Connection;

use super::probes::Captured;
use crate::annotate::{self, Interface, Packet};
use crate::clock;

/// Writes `capture` to `path` with the comments of `conn`.
pub fn write_pcapng(path: &Path, capture: &Captured, conn: &Connection) -> anyhow::Result<()> {
    let iface = Interface {
        linktype: capture.linktype,
        name: "lo".into(),
        stats: Some(InterfaceStats {
            ts_ns: clock::realtime_ns(),
            start_ns: capture.start_ns,
            received: capture.frames.len() as u64,
            dropped: capture.dropped,
        }),
    };
    let packets = capture.frames.iter().map(|(ts, frame)| Packet {
        ts_ns: *ts,
        timeline_ns: capture.mono(*ts),
        data: frame,
        orig_len: u32::try_from(frame.len()).unwrap_or(u32::MAX),
        direction: None,
        comment: None,
    });
    annotate::write_pcapng(path, &iface, packets, std::slice::from_ref(conn))
}
