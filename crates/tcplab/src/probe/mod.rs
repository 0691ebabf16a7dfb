//! Probes: the I/O edges that observe the kernel. Each produces timestamped events
//! (bytes, state changes) and leaves all interpretation to `tcplab_core`.

pub mod capture;
pub mod sockdiag;
pub mod tracefs;
