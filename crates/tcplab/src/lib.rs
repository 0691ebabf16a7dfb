//! tcplab: see a TCP connection's whole life, exactly as the Linux kernel lived it.
//!
//! # Layout
//!
//! This crate is the binary and every I/O edge; the logic lives in the sans-IO
//! [`tcplab_core`] crate. Data flows one way: probes and sockets produce timestamped
//! events, the core correlates them, renderers print.
//!
//! - [`server`]: the echo test server (`tcplab serve`), built on
//!   [`tcplab_core::protocol`].
//! - [`client`]: the line client (`tcplab connect`): interactive or scripted, with a
//!   chosen close style.
//! - [`bench`]: the load generator (`tcplab bench`).
//! - [`lab`]: experiments run end to end (`tcplab lab`).
//! - [`replay`]: the same views of any capture file, states inferred (`tcplab replay`).
//! - [`view`] and [`annotate`]: how `lab` and `replay` show a timeline: ladder, JSON,
//!   Mermaid, SVG/HTML files, and the annotated pcapng.
//! - [`watch`]: live TCP state transitions (`tcplab watch`), from [`probe`]s.
//! - [`exit`]: the documented exit codes and the error type that carries one.

pub mod annotate;
pub mod bench;
pub mod capture;
pub mod client;
pub mod clock;
pub mod exit;
pub mod interrupt;
pub mod lab;
pub mod log;
pub mod netns;
pub mod probe;
pub mod replay;
pub mod seconds;
pub mod server;
pub mod sysctl;
pub mod tunwire;
pub mod twohost;
pub mod view;
pub mod watch;
