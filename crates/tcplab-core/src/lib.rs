//! tcplab-core: the sans-IO heart of tcplab.
//!
//! Nothing here opens a socket, reads a clock, uses `unsafe` or needs root: probes and
//! sockets in the `tcplab` crate feed bytes and timestamps in, and get decisions, timelines
//! and text out. That is what lets this crate be tested deterministically from bytes.
//!
//! # Layout
//!
//! - [`protocol`]: the echo test protocol as a byte-in/bytes-out state machine.
//! - [`state`]: TCP states with their RFC 9293 names and the one transition table.
//! - [`event`]: a state change of one endpoint, as the probes report it.
//! - [`wire`]: frames decoded (Ethernet, Linux cooked, IPv4, IPv6, TCP and its options).
//! - [`flow`]: connection keys, direction, relative sequence numbers.
//! - [`pcap`]: pcap and pcapng read from bytes, pcapng written.
//! - [`filter`]: the capture filter language, compiled to classic BPF.
//! - [`impair`]: the impairable wire's decision engine (drop, hold, delay, reorder, dup).
//! - [`sysctl`]: the kernel parameters that shape the scenarios, with one line each.
//! - [`render`]: text out: tcpdump-style packet views, ladder, Mermaid, JSON.
#![forbid(unsafe_code)]

pub mod event;
pub mod expect;
pub mod filter;
pub mod flow;
pub mod impair;
pub mod pcap;
pub mod protocol;
pub mod render;
pub mod state;
pub mod sysctl;
pub mod timeline;
pub mod wire;
