//! The echo test protocol as a sans-IO state machine: bytes in, replies and events out.
//!
//! Compatible with the classic PHP socket example that networking courses use, minus its
//! bugs (see `../shared/DESIGN.md`, "The echo test protocol"):
//!
//! - On accept the server sends [`BANNER`].
//! - Input is lines. A line ends at `\n`, `\r\n` or `\r`; a `\r\n` pair is ONE terminator,
//!   also when the `\r` ends one read and the `\n` starts the next. (The classic example
//!   reads up to `\r` and leaves the `\n` unread, so its `close()` sends RST, not FIN.)
//! - Surrounding ASCII whitespace is trimmed; an empty line is ignored.
//! - `quit` closes this connection; `shutdown` stops the server (if the peer may).
//! - Anything else is answered `You said '<line>'.\n`, bytes echoed exactly.
//! - A line longer than the limit gets [`TOO_LONG_REPLY`] once; the rest of that line is
//!   discarded and the connection stays usable. The session never buffers more than the
//!   limit, whatever the peer sends.
//!
//! The machine never reads a socket or a clock: the server feeds it what it read and
//! writes what it produced.

use std::net::IpAddr;

/// What the server sends first on every connection: an empty line, a welcome line, and
/// how to quit, as the classic example does.
pub const BANNER: &[u8] = b"\nWelcome to the tcplab test server.\n\
To quit, type 'quit'. To shut down the server type 'shutdown'.\n";

/// Number of lines in [`BANNER`], for clients that wait for it.
pub const BANNER_LINES: usize = 3;

/// The reply to a line longer than the limit. Sent once per overlong line.
pub const TOO_LONG_REPLY: &[u8] = b"Error: line too long, discarded.\n";

/// The reply to `shutdown` from a peer that may not stop the server.
pub const SHUTDOWN_REFUSED_REPLY: &[u8] =
    b"Error: 'shutdown' is only accepted from the server's own machine.\n";

/// What every other client is told when the server shuts down.
pub const SHUTTING_DOWN_NOTICE: &[u8] = b"server shutting down\n";

/// What a client is told when the server already has its maximum of connections.
pub const BUSY_NOTICE: &[u8] = b"server busy: too many connections, try again later\n";

/// The default line limit in bytes: the classic example's read size.
pub const DEFAULT_MAX_LINE: usize = 2048;

/// Whether a peer at `peer` may shut the server down: loopback peers may (127.0.0.0/8,
/// `::1`, and IPv4-mapped loopback), others only when the operator allowed it.
pub fn shutdown_allowed(peer: IpAddr, allow_remote: bool) -> bool {
    allow_remote || peer.to_canonical().is_loopback()
}

/// Settings of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Longest accepted line in bytes, terminator excluded. At least 1.
    pub max_line: usize,
    /// Whether `shutdown` from this peer is honoured (see [`shutdown_allowed`]).
    pub may_shutdown: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_line: DEFAULT_MAX_LINE,
            may_shutdown: true,
        }
    }
}

/// Something the session noticed, for the server's log and for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete, trimmed, non-empty line that was answered with an echo.
    Line(&'a [u8]),
    /// A line exceeded the limit; the error reply was produced.
    TooLong,
    /// The peer asked to close this connection.
    Quit,
    /// The peer asked to stop the server and may do so.
    Shutdown,
    /// The peer asked to stop the server and may not; a refusal was produced.
    ShutdownRefused,
}

/// Whether the session goes on after the input just fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Keep reading.
    Open,
    /// `quit` was received: close this connection. Input after it was ignored.
    Quit,
    /// `shutdown` was received from a peer that may: stop the server. Input after it was
    /// ignored.
    Shutdown,
}

/// One connection's protocol state.
#[derive(Debug, Clone)]
pub struct Session {
    config: Config,
    /// Bytes of the current, unterminated line. Never longer than `config.max_line`.
    partial: Vec<u8>,
    /// The last byte seen was `\r`: a `\n` right after it belongs to the same terminator.
    after_cr: bool,
    /// The current line went over the limit: drop bytes until its terminator.
    discarding: bool,
    /// `quit` or `shutdown` was seen; all further input is ignored.
    finished: Option<Status>,
    /// The line that finished the session ended with a `\r` that was the last byte fed:
    /// its `\n` may still be on the way.
    finished_on_cr: bool,
}

impl Session {
    /// A new session. A `max_line` of 0 is treated as 1.
    pub fn new(config: Config) -> Self {
        let config = Config {
            max_line: config.max_line.max(1),
            ..config
        };
        Session {
            config,
            partial: Vec::new(),
            after_cr: false,
            discarding: false,
            finished: None,
            finished_on_cr: false,
        }
    }

    /// True when the session finished (`quit`, `shutdown`) on a line ended by a `\r`
    /// that was the last byte fed: the peer's `\n` of the same `\r\n` may still arrive.
    /// A server that closes with it unread makes its kernel send RST instead of FIN, so
    /// it should read that one byte first (briefly).
    pub fn awaits_lf(&self) -> bool {
        self.finished.is_some() && self.finished_on_cr
    }

    /// Bytes buffered for an unterminated line (bounded by the line limit).
    pub fn buffered(&self) -> usize {
        self.partial.len()
    }

    /// Feeds bytes read from the peer. Replies are appended to `out`; `on_event` sees
    /// each event in order. Feeding the same stream cut at any points gives the same
    /// replies and events.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        mut on_event: impl FnMut(Event<'_>),
    ) -> Status {
        if let Some(status) = self.finished {
            return status;
        }
        while !input.is_empty() {
            if std::mem::take(&mut self.after_cr) && input[0] == b'\n' {
                input = &input[1..];
                continue;
            }
            let end = input.iter().position(|&b| b == b'\n' || b == b'\r');
            let (body, rest) = match end {
                Some(i) => {
                    self.after_cr = input[i] == b'\r';
                    (&input[..i], Some(&input[i + 1..]))
                }
                None => (input, None),
            };
            if self.discarding {
                // The rest of an overlong line: drop it, stop at its terminator.
            } else if self.partial.len() + body.len() > self.config.max_line {
                self.discarding = true;
                self.partial.clear();
                out.extend_from_slice(TOO_LONG_REPLY);
                on_event(Event::TooLong);
            } else if rest.is_some() && self.partial.is_empty() {
                // Fast path: the whole line is in this read; no copy.
                if let Some(status) = self.line(body, out, &mut on_event) {
                    self.finished_on_cr = self.after_cr && rest.is_some_and(<[u8]>::is_empty);
                    return status;
                }
            } else {
                self.partial.extend_from_slice(body);
                if rest.is_some() {
                    let line = std::mem::take(&mut self.partial);
                    let status = self.line(&line, out, &mut on_event);
                    self.partial = line;
                    self.partial.clear();
                    if let Some(status) = status {
                        self.finished_on_cr = self.after_cr && rest.is_some_and(<[u8]>::is_empty);
                        return status;
                    }
                }
            }
            match rest {
                Some(rest) => {
                    self.discarding = false;
                    input = rest;
                }
                None => break,
            }
        }
        Status::Open
    }

    /// Handles one complete line; returns the final status if the line ends the session.
    fn line(
        &mut self,
        raw: &[u8],
        out: &mut Vec<u8>,
        on_event: &mut impl FnMut(Event<'_>),
    ) -> Option<Status> {
        let line = raw.trim_ascii();
        match line {
            b"" => None,
            b"quit" => {
                on_event(Event::Quit);
                self.finish(Status::Quit)
            }
            b"shutdown" if self.config.may_shutdown => {
                on_event(Event::Shutdown);
                self.finish(Status::Shutdown)
            }
            b"shutdown" => {
                out.extend_from_slice(SHUTDOWN_REFUSED_REPLY);
                on_event(Event::ShutdownRefused);
                None
            }
            _ => {
                out.extend_from_slice(b"You said '");
                out.extend_from_slice(line);
                out.extend_from_slice(b"'.\n");
                on_event(Event::Line(line));
                None
            }
        }
    }

    fn finish(&mut self, status: Status) -> Option<Status> {
        self.partial.clear();
        self.finished = Some(status);
        Some(status)
    }
}

#[cfg(test)]
mod tests;
