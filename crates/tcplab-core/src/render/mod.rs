//! Renderers: text for people (terminal ladder, SVG, HTML, Mermaid, tcpdump-style
//! packet lines and hex dumps) and for programs (JSON). Each takes finished data and
//! returns text; none does I/O.

mod checksum;
mod hex;
pub mod html;
mod jsonl;
pub mod ladder;
pub(crate) mod line;
pub mod mermaid;
mod packet;
pub mod svg;

pub use checksum::{tcp_checksum_status, ChecksumStatus};
pub use hex::{ascii, hex_and_ascii};
pub(crate) use packet::{num, Numbers};
pub use packet::{write_time, Dump, Frame, Renderer, ViewOptions};

use serde::Serialize;

use crate::timeline::Connection;

/// Version of the `--json` timeline schema; bumped on any incompatible change.
pub const TIMELINE_SCHEMA_VERSION: u32 = 1;

/// The `--json` document: `{"version": 1, "connections": [...]}`.
#[derive(Debug, Serialize)]
pub struct TimelineDocument<'a> {
    /// [`TIMELINE_SCHEMA_VERSION`].
    pub version: u32,
    /// Every connection's timeline.
    pub connections: &'a [Connection],
}

/// The timeline as one pretty JSON document.
pub fn json(connections: &[Connection]) -> String {
    serde_json::to_string_pretty(&TimelineDocument {
        version: TIMELINE_SCHEMA_VERSION,
        connections,
    })
    .expect("timeline types serialize")
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod view_tests;
