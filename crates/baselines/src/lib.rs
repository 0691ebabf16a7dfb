//! Baseline echo servers for `scripts/bench.sh`: the two classic designs that
//! `tcplab serve` must beat, each at its own strength. Dev-only, never shipped.
//!
//! - `baseline-blocking`: one client at a time with blocking std I/O, reading up to
//!   2048 bytes at a time like the classic PHP socket example (with correct framing).
//! - `baseline-tokio`: a multi-thread tokio runtime, one task per connection, buffered
//!   line reads: what most people write first with tokio.
//!
//! Both speak the echo protocol of `shared/DESIGN.md`, print `listening on IP:PORT` as
//! their first stdout line and accept `--listen ADDR:PORT` (default `127.0.0.1:54321`).
//! They deliberately do not use `tcplab-core`, so that they measure the classic designs
//! rather than our code.

use std::net::SocketAddr;

/// The banner sent on accept: an empty line, a welcome line, how to quit.
pub const BANNER: &[u8] = b"\nWelcome to the baseline test server.\n\
To quit, type 'quit'. To shut down the server type 'shutdown'.\n";

/// What a line asks of the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing to do (an empty line).
    Ignore,
    /// Close this connection.
    Quit,
    /// Stop the server.
    Shutdown,
    /// Append this reply.
    Reply,
}

/// Decides what to do with one line (terminator already removed), appending the echo
/// reply to `out` when there is one.
pub fn answer(line: &[u8], out: &mut Vec<u8>) -> Action {
    let line = line.trim_ascii();
    match line {
        b"" => Action::Ignore,
        b"quit" => Action::Quit,
        b"shutdown" => Action::Shutdown,
        _ => {
            out.extend_from_slice(b"You said '");
            out.extend_from_slice(line);
            out.extend_from_slice(b"'.\n");
            Action::Reply
        }
    }
}

/// The `--listen ADDR:PORT` argument, or the default `127.0.0.1:54321`.
///
/// # Panics
/// On a malformed command line: these are dev tools, a panic message is enough.
pub fn listen_addr() -> SocketAddr {
    let mut args = std::env::args().skip(1);
    let mut addr = "127.0.0.1:54321".to_string();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => addr = args.next().expect("--listen needs ADDR:PORT"),
            other => panic!("unknown argument {other:?}; usage: [--listen ADDR:PORT]"),
        }
    }
    addr.parse().expect("--listen takes ADDR:PORT")
}
