//! Renderers: text for people (terminal ladder, SVG, HTML, Mermaid) and for programs
//! (JSON). Each takes finished data and returns text; none does I/O.

pub mod html;
pub mod ladder;
pub mod mermaid;
pub mod svg;

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
