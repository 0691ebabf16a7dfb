//! The line client (`tcplab connect`): interactive like telnet, or scripted with `--send`
//! and a chosen close style, so each way of ending a TCP connection is one flag away.
//!
//! The scripted client is also what `tcplab lab` drives: [`Script::run`] reports every
//! step to an observer, which prints it (`connect`) or records it on a timeline (`lab`).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use socket2::SockRef;
use tcplab_core::protocol::BANNER_LINES;

use crate::exit::{self, Failure};

/// How the client ends the connection after its script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CloseStyle {
    /// close() at once: our FIN goes first (active close).
    Fin,
    /// shutdown(SHUT_WR) right after the last line, read its reply and the server's FIN,
    /// then close(): a half-close, the server still sends after our FIN.
    Half,
    /// SO_LINGER {on, 0} then close(): an abortive close, RST instead of FIN.
    Rst,
    /// Read until the server closes first (e.g. after `quit`), then close().
    Wait,
    /// Do not read the last reply: wait until it has arrived, then close() with it
    /// unread. The kernel then sends RST instead of FIN (RFC 9293 §3.6, RFC 2525 §2.17).
    Unread,
}

impl CloseStyle {
    /// The style used when none is given: wait for the server after `quit` or
    /// `shutdown`, close first otherwise.
    pub fn default_for(lines: &[String]) -> CloseStyle {
        match lines.last().map(|l| l.trim()) {
            Some("quit" | "shutdown") => CloseStyle::Wait,
            _ => CloseStyle::Fin,
        }
    }
}

/// Command-line arguments of `tcplab connect`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Server to connect to, as HOST:PORT (e.g. 127.0.0.1:54321, [::1]:54321).
    pub target: String,
    /// Send this line and wait for its reply (repeatable). Without --send, lines typed
    /// on stdin are sent, like telnet.
    #[arg(long = "send", value_name = "LINE")]
    pub send: Vec<String>,
    /// How to end the connection [default: wait after quit/shutdown, else fin].
    #[arg(long, value_enum)]
    pub close: Option<CloseStyle>,
    /// Set TCP_NODELAY (disable Nagle's algorithm).
    #[arg(long)]
    pub nodelay: bool,
    /// End lines with \r\n, as telnet does, instead of \n.
    #[arg(long)]
    pub crlf: bool,
    /// Seconds to wait for the connection and for each reply.
    #[arg(long, default_value_t = 10.0, value_parser = crate::seconds::parse, allow_negative_numbers = true)]
    pub timeout: f64,
    /// Lines of banner to wait for before sending (0: do not wait).
    #[arg(long, default_value_t = BANNER_LINES)]
    pub banner_lines: usize,
    /// Describe each step on stderr.
    #[arg(long, short)]
    pub verbose: bool,
}

/// One thing the client did or saw, in order. Calls that make the kernel act (write,
/// shutdown, setsockopt, close) are reported just before they are made; reads when they
/// return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// connect() returned: the three-way handshake completed.
    Connected {
        /// Our address.
        local: SocketAddr,
        /// The server's address.
        remote: SocketAddr,
    },
    /// Bytes written with write().
    Sent(Vec<u8>),
    /// Bytes returned by read().
    Received(Vec<u8>),
    /// read() returned 0: the server's FIN arrived.
    PeerClosed,
    /// shutdown(SHUT_WR): our FIN, the socket still reads.
    HalfClosed,
    /// SO_LINGER {on, 0} was set: the close() that follows sends RST.
    LingerZero,
    /// close().
    Closed,
}

/// A scripted session: banner, lines, close.
#[derive(Debug, Clone)]
pub struct Script {
    /// Lines to send, each waiting for its reply.
    pub lines: Vec<String>,
    /// How to end.
    pub close: CloseStyle,
    /// Line terminator: `\r\n` when true, `\n` otherwise.
    pub crlf: bool,
    /// Banner lines to read first.
    pub banner_lines: usize,
    /// Longest wait for any one thing.
    pub timeout: Duration,
    /// A pause after connecting, after each reply and before closing, so that a slow
    /// observer (sock_diag polling) sees every state; zero for none.
    pub pace: Duration,
}

/// Why a scripted session failed, in TCP terms, once the connection is established.
fn io_failure(what: &str, err: io::Error) -> Failure {
    failure(what, err, false)
}

/// Why `what` failed, in TCP terms. `connecting`: during connect(), where a timeout
/// means the handshake never completed, not a silent server.
fn failure(what: &str, err: io::Error, connecting: bool) -> Failure {
    let code = match err.kind() {
        io::ErrorKind::ConnectionRefused => exit::REFUSED,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => exit::RESET,
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => exit::TIMEOUT,
        _ => exit::FAILURE,
    };
    let why = match code {
        exit::REFUSED => {
            "connection refused (no listener on that port: the kernel answered the SYN with RST)"
                .to_string()
        }
        exit::RESET => "connection reset by peer (the server sent RST: it aborted, closed with \
                        unread data, or the socket no longer exists)"
            .to_string(),
        exit::TIMEOUT if connecting => "timed out (no SYN,ACK in time: the SYN or its answer \
                                        was lost or dropped, e.g. by a firewall or because \
                                        the listener's accept queue is full)"
            .to_string(),
        exit::TIMEOUT => "timed out (the connection is established but the server sent \
                          nothing in time: it did not answer)"
            .to_string(),
        _ => err.to_string(),
    };
    Failure::new(code, format!("{what}: {why}"))
}

/// Resolves `target` (HOST:PORT) to its first address.
pub fn resolve(target: &str) -> Result<SocketAddr, Failure> {
    target
        .to_socket_addrs()
        .map_err(|e| Failure::new(exit::FAILURE, format!("{target}: {e} (expected HOST:PORT)")))?
        .next()
        .ok_or_else(|| Failure::new(exit::FAILURE, format!("{target}: no address")))
}

/// Opens the connection: socket(), optional TCP_NODELAY, connect() with a deadline.
pub fn open(addr: SocketAddr, timeout: Duration, nodelay: bool) -> Result<TcpStream, Failure> {
    let stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| failure(&format!("connect {addr}"), e, true))?;
    if nodelay {
        stream
            .set_nodelay(true)
            .map_err(|e| io_failure("setsockopt TCP_NODELAY", e))?;
    }
    Ok(stream)
}

/// Reads from a stream with a deadline per call, keeping what follows a line end.
struct Reader<'a> {
    stream: &'a TcpStream,
    peer: SocketAddr,
    timeout: Duration,
    buf: Vec<u8>,
}

impl Reader<'_> {
    /// Reads until `lines` line ends (`\n`) have arrived. Returns false on EOF first.
    fn lines(&mut self, lines: usize, observe: &mut dyn FnMut(Step)) -> Result<bool, Failure> {
        let mut seen = 0;
        while seen < lines {
            match self.read(observe)? {
                Some(n) => seen += n,
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Reads until the server's FIN.
    fn until_eof(&mut self, observe: &mut dyn FnMut(Step)) -> Result<(), Failure> {
        while self.read(observe)?.is_some() {}
        Ok(())
    }

    /// One read(); returns the number of line ends in it, or None at EOF.
    fn read(&mut self, observe: &mut dyn FnMut(Step)) -> Result<Option<usize>, Failure> {
        self.stream
            .set_read_timeout(Some(self.timeout))
            .map_err(|e| io_failure("setsockopt SO_RCVTIMEO", e))?;
        self.buf.resize(64 * 1024, 0);
        let n = loop {
            match (&mut &*self.stream).read(&mut self.buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_failure(&format!("read from {}", self.peer), e)),
            }
        };
        if n == 0 {
            observe(Step::PeerClosed);
            return Ok(None);
        }
        let data = self.buf[..n].to_vec();
        let ends = data.iter().filter(|&&b| b == b'\n').count();
        observe(Step::Received(data));
        Ok(Some(ends))
    }
}

impl Script {
    /// Runs the script on a connected stream, reporting each step to `observe`.
    pub fn run(&self, stream: TcpStream, observe: &mut dyn FnMut(Step)) -> Result<(), Failure> {
        let peer = match stream.peer_addr() {
            Ok(peer) => peer,
            // ENOTCONN right after connect(): the peer reset the connection already. A
            // read surfaces the pending error (ECONNRESET), which is the real story.
            Err(e) => {
                let mut byte = [0u8; 1];
                return Err(match (&stream).read(&mut byte) {
                    Err(read_error) => io_failure("read", read_error),
                    Ok(_) => io_failure("getpeername", e),
                });
            }
        };
        let local = stream
            .local_addr()
            .map_err(|e| io_failure("getsockname", e))?;
        observe(Step::Connected {
            local,
            remote: peer,
        });
        let mut reader = Reader {
            stream: &stream,
            peer,
            timeout: self.timeout,
            buf: Vec::new(),
        };
        let pause = || {
            if !self.pace.is_zero() {
                std::thread::sleep(self.pace);
            }
        };
        if !reader.lines(self.banner_lines, observe)? {
            return Err(Failure::new(
                exit::FAILURE,
                format!("{peer}: the server closed the connection before its banner"),
            ));
        }
        let mut peer_closed = false;
        pause();
        for (i, line) in self.lines.iter().enumerate() {
            let last = i + 1 == self.lines.len();
            let mut bytes = line.as_bytes().to_vec();
            bytes.extend_from_slice(if self.crlf { b"\r\n" } else { b"\n" });
            // A half-close after the last line: cork the socket so the data waits for
            // the FIN and both leave in one segment. Otherwise the server's reply could
            // overtake our shutdown(), and the half-close would not show.
            let half_close_now = last && self.close == CloseStyle::Half;
            if half_close_now {
                SockRef::from(&stream)
                    .set_tcp_cork(true)
                    .map_err(|e| io_failure("setsockopt TCP_CORK", e))?;
            }
            observe(Step::Sent(bytes.clone()));
            (&stream)
                .write_all(&bytes)
                .map_err(|e| io_failure(&format!("write to {peer}"), e))?;
            match line.trim() {
                // No reply: the server closes (quit, shutdown) or ignores the line.
                "quit" | "shutdown" | "" => {}
                // A half-close does not wait for the last reply: it arrives after our
                // FIN, which is the point of a half-close.
                _ if last && self.close == CloseStyle::Half => {}
                _ if last && self.close == CloseStyle::Unread => {
                    wait_readable(&stream, self.timeout)
                        .map_err(|e| io_failure(&format!("poll {peer}"), e))?;
                }
                _ => {
                    if !reader.lines(1, observe)? {
                        peer_closed = true;
                        break;
                    }
                }
            }
        }
        pause();
        match self.close {
            CloseStyle::Fin => {}
            CloseStyle::Half => {
                observe(Step::HalfClosed);
                stream
                    .shutdown(Shutdown::Write)
                    .map_err(|e| io_failure("shutdown(SHUT_WR)", e))?;
                if !peer_closed {
                    reader.until_eof(observe)?;
                }
            }
            CloseStyle::Rst => {
                observe(Step::LingerZero);
                SockRef::from(&stream)
                    .set_linger(Some(Duration::ZERO))
                    .map_err(|e| io_failure("setsockopt SO_LINGER", e))?;
            }
            CloseStyle::Wait => {
                if !peer_closed {
                    reader.until_eof(observe)?;
                }
            }
            CloseStyle::Unread => {}
        }
        observe(Step::Closed);
        drop(stream);
        Ok(())
    }
}

/// Waits until the socket has data to read (poll(2) for POLLIN), without reading it.
fn wait_readable(stream: &TcpStream, timeout: Duration) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: poll reads and writes exactly the one pollfd we pass.
    match unsafe { libc::poll(&mut pfd, 1, ms) } {
        0 => Err(io::ErrorKind::TimedOut.into()),
        n if n < 0 => Err(io::Error::last_os_error()),
        _ => Ok(()),
    }
}

/// `tcplab connect`.
pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs_f64(args.timeout.max(0.001));
    let addr = resolve(&args.target)?;
    let stream = open(addr, timeout, args.nodelay)?;
    if args.send.is_empty() {
        return interactive(stream, &args);
    }
    let script = Script {
        close: args
            .close
            .unwrap_or_else(|| CloseStyle::default_for(&args.send)),
        lines: args.send.clone(),
        crlf: args.crlf,
        banner_lines: args.banner_lines,
        timeout,
        pace: Duration::ZERO,
    };
    let start = Instant::now();
    let mut stdout = io::stdout().lock();
    let mut write_error = None;
    script.run(stream, &mut |step| {
        if args.verbose {
            eprintln!("{:>10.3} ms  {}", ms(start.elapsed()), describe(&step));
        }
        if let Step::Received(data) = &step {
            if let Err(e) = stdout.write_all(data).and_then(|()| stdout.flush()) {
                write_error.get_or_insert(e);
            }
        }
    })?;
    if let Some(err) = write_error {
        return Err(err.into());
    }
    Ok(ExitCode::SUCCESS)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One line about a step, for `--verbose`.
pub fn describe(step: &Step) -> String {
    match step {
        Step::Connected { local, remote } => format!("connected {local} -> {remote}"),
        Step::Sent(b) => format!("sent {} bytes: {:?}", b.len(), String::from_utf8_lossy(b)),
        Step::Received(b) => {
            format!(
                "received {} bytes: {:?}",
                b.len(),
                String::from_utf8_lossy(b)
            )
        }
        Step::PeerClosed => "read() = 0: the server's FIN arrived".to_string(),
        Step::HalfClosed => "shutdown(SHUT_WR): our FIN is sent, still reading".to_string(),
        Step::LingerZero => "SO_LINGER {on, 0}: close() will send RST".to_string(),
        Step::Closed => "close()".to_string(),
    }
}

/// Telnet-like: stdin lines to the server, everything received to stdout. When the
/// server closes first the client exits at once, as telnet does; on stdin EOF it ends with
/// the chosen close style (default: half-close and wait, so the last replies are not lost).
fn interactive(stream: TcpStream, args: &Args) -> anyhow::Result<ExitCode> {
    let peer = stream.peer_addr()?;
    if args.verbose {
        eprintln!("connected {} -> {peer}", stream.local_addr()?);
    }
    let reader = stream.try_clone()?;
    // The receiving side decides how the process ends once the server is done: like
    // telnet, it does not wait for the user to type another line.
    let receiving = std::thread::spawn(move || {
        let code = match copy_to_stdout(reader) {
            Ok(()) => {
                eprintln!("connection closed by the server (FIN received)");
                exit::OK
            }
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => exit::OK,
            Err(e) => {
                let failure = io_failure(&format!("read from {peer}"), e);
                eprintln!("tcplab: {failure}");
                failure.code
            }
        };
        std::process::exit(i32::from(code));
    });
    let terminator: &[u8] = if args.crlf { b"\r\n" } else { b"\n" };
    let mut lines = io::stdin().lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        if io::BufRead::read_until(&mut lines, b'\n', &mut line)? == 0 {
            break;
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        line.extend_from_slice(terminator);
        if let Err(e) = (&stream).write_all(&line) {
            return Err(io_failure(&format!("write to {peer}"), e).into());
        }
    }
    // stdin ended. The process exit closes both descriptors of the socket, so a Fin or
    // Rst close happens as the function returns.
    match args.close.unwrap_or(CloseStyle::Half) {
        CloseStyle::Rst => {
            SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
            Ok(ExitCode::SUCCESS)
        }
        CloseStyle::Fin | CloseStyle::Unread => Ok(ExitCode::SUCCESS),
        CloseStyle::Half | CloseStyle::Wait => {
            if args.close != Some(CloseStyle::Wait) {
                stream.shutdown(Shutdown::Write)?;
            }
            let _ = receiving.join();
            // Only reached if the receiving thread panicked.
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Copies everything the server sends to stdout until its FIN.
fn copy_to_stdout(mut reader: TcpStream) -> io::Result<()> {
    let mut stdout = io::stdout();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        stdout.write_all(&buf[..n])?;
        stdout.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--nodelay` reaches the socket: read TCP_NODELAY back from the kernel.
    #[test]
    fn open_sets_tcp_nodelay_only_when_asked() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let timeout = Duration::from_secs(5);
        let with = open(addr, timeout, true).unwrap();
        assert!(with.nodelay().unwrap(), "--nodelay: TCP_NODELAY is on");
        let without = open(addr, timeout, false).unwrap();
        assert!(!without.nodelay().unwrap(), "no --nodelay: Nagle stays on");
    }

    #[test]
    fn a_timeout_is_told_apart_by_phase() {
        let timed_out = || io::Error::from(io::ErrorKind::WouldBlock);
        let connect = failure("connect 192.0.2.1:9", timed_out(), true);
        assert_eq!(connect.code, exit::TIMEOUT);
        assert!(connect.message.contains("no SYN,ACK in time"), "{connect}");
        let read = io_failure("read from 127.0.0.1:9", timed_out());
        assert_eq!(read.code, exit::TIMEOUT);
        assert!(
            read.message.contains("the server sent nothing in time"),
            "{read}"
        );
    }
}
