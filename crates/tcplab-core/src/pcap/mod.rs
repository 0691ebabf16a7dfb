//! Capture files: pcap and pcapng read from bytes, pcapng written.
//!
//! Written by hand rather than with a crate so that a corrupt or truncated file
//! reports the byte offset where it goes wrong (everything before it is still
//! returned), and so that per-packet comments and direction flags are ours to set.
//! Formats: pcap as in draft-ietf-opsawg-pcap, pcapng as in draft-ietf-opsawg-pcapng.

mod read;
mod write;

pub use read::{Format, Interface, Reader, Record};
pub use write::{InterfaceDesc, InterfaceStats, OutPacket, PcapngWriter};

/// Direction of a packet, as pcapng's `epb_flags` bits 0-1 store it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PacketDirection {
    /// Received by this host.
    Inbound,
    /// Sent by this host.
    Outbound,
}

impl PacketDirection {
    /// From the two low bits of `epb_flags` (0 = not known).
    pub fn from_epb_flags(flags: u32) -> Option<Self> {
        match flags & 0b11 {
            1 => Some(PacketDirection::Inbound),
            2 => Some(PacketDirection::Outbound),
            _ => None,
        }
    }
    /// The two low bits of `epb_flags`.
    pub fn epb_flags(self) -> u32 {
        match self {
            PacketDirection::Inbound => 1,
            PacketDirection::Outbound => 2,
        }
    }
}

/// A capture file that cannot be read further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte offset {offset}: {reason}")]
pub struct PcapError {
    /// Offset in the file of the block or record that is wrong.
    pub offset: usize,
    /// What is wrong with it.
    pub reason: String,
}

impl PcapError {
    fn at(offset: usize, reason: impl Into<String>) -> Self {
        PcapError {
            offset,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests;
