//! `tcplab serve` over real sockets: the protocol, shutdown, sequential mode, load and
//! every kind of bad client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::support::{self, Server};

const BANNER: &[u8] = tcplab_core::protocol::BANNER;
const TIMEOUT: Duration = Duration::from_secs(10);

/// A test client: a socket and a buffered reader on it.
struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    /// Connects and reads the banner.
    #[track_caller]
    fn new(addr: SocketAddr) -> Client {
        let mut client = Client::raw(addr);
        client.expect(BANNER);
        client
    }

    /// Connects without reading anything.
    #[track_caller]
    fn raw(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Client { stream, reader }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    #[track_caller]
    fn expect(&mut self, expected: &[u8]) {
        let mut got = vec![0; expected.len()];
        self.reader.read_exact(&mut got).expect("read reply");
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected)
        );
    }

    #[track_caller]
    fn line(&mut self) -> Vec<u8> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line).expect("read line");
        line
    }

    /// Reads until EOF; panics on a reset.
    #[track_caller]
    fn expect_eof(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        self.reader
            .read_to_end(&mut rest)
            .expect("clean EOF (FIN), not a reset");
        rest
    }

    #[track_caller]
    fn echo(&mut self, line: &str) {
        self.send(format!("{line}\n").as_bytes());
        self.expect(format!("You said '{line}'.\n").as_bytes());
    }
}

/// After whatever a test did to the server, a fresh client is still served.
#[track_caller]
fn still_serving(server: &Server) {
    let mut fresh = Client::new(server.addr);
    fresh.echo("still there?");
    fresh.send(b"quit\n");
    fresh.expect_eof();
}

#[test]
fn quit_makes_the_server_close_first_with_fin() {
    let server = Server::start(&[]);
    for terminator in ["\n", "\r\n", "\r"] {
        let mut client = Client::new(server.addr);
        client.send(format!("hello{terminator}").as_bytes());
        client.expect(b"You said 'hello'.\n");
        client.send(format!("quit{terminator}").as_bytes());
        assert_eq!(client.expect_eof(), b"", "terminator {terminator:?}");
    }
}

#[test]
fn crlf_split_across_segments_is_one_terminator_and_quit_gives_fin() {
    let server = Server::start(&[]);
    let mut client = Client::new(server.addr);
    client.stream.set_nodelay(true).unwrap();
    client.send(b"hello\r");
    client.expect(b"You said 'hello'.\n");
    client.send(b"\nquit\r");
    client.send(b"\n");
    // The classic example would leave the \n unread and reset; we must send FIN.
    assert_eq!(client.expect_eof(), b"");
}

#[test]
fn shutdown_from_loopback_exits_zero_and_frees_the_port() {
    let mut server = Server::start(&[]);
    let mut other = Client::new(server.addr);
    let mut client = Client::new(server.addr);
    client.send(b"shutdown\n");
    assert_eq!(client.expect_eof(), b"");
    assert_eq!(
        other.expect_eof(),
        tcplab_core::protocol::SHUTTING_DOWN_NOTICE
    );
    let status = server.wait_exit(TIMEOUT);
    assert_eq!(status.code(), Some(0));
    std::net::TcpListener::bind(server.addr).expect("the port is free again");
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let mut server = Server::start(&[]);
    let mut client = Client::new(server.addr);
    // SAFETY: kill(2) on the PID of a child we started and have not reaped.
    let rc = unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    assert_eq!(rc, 0);
    assert_eq!(
        client.expect_eof(),
        tcplab_core::protocol::SHUTTING_DOWN_NOTICE
    );
    assert_eq!(server.wait_exit(TIMEOUT).code(), Some(0));
}

#[test]
fn sequential_serves_the_second_client_only_after_the_first_quits() {
    let server = Server::start(&["--sequential"]);
    let mut first = Client::new(server.addr);
    let mut second = Client::raw(server.addr);
    // The second connection completes its handshake (the kernel's accept queue) but gets
    // no banner while the first is served.
    second
        .stream
        .set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    first.echo("one");
    first.echo("two");
    let mut byte = [0u8; 1];
    let early = second.stream.peek(&mut byte);
    assert!(
        early.is_err(),
        "the second client got data while the first was served: {early:?}"
    );
    first.send(b"quit\n");
    first.expect_eof();
    second.stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    second.expect(BANNER);
    second.echo("my turn");
}

#[test]
fn a_thousand_concurrent_clients_doing_ten_echoes_each() {
    let server = Server::start(&["--backlog", "1024"]);
    let addr = server.addr;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let ok = runtime.block_on(async move {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..1000 {
            tasks.spawn(async move {
                let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                let (read, mut write) = stream.into_split();
                let mut read = tokio::io::BufReader::new(read);
                let mut banner = vec![0; BANNER.len()];
                read.read_exact(&mut banner).await.unwrap();
                assert_eq!(banner, BANNER);
                let mut line = String::new();
                for i in 0..10 {
                    write
                        .write_all(format!("client {c} line {i}\n").as_bytes())
                        .await
                        .unwrap();
                    line.clear();
                    read.read_line(&mut line).await.unwrap();
                    assert_eq!(line, format!("You said 'client {c} line {i}'.\n"));
                }
                write.write_all(b"quit\n").await.unwrap();
                let mut rest = Vec::new();
                read.read_to_end(&mut rest).await.unwrap();
                assert!(rest.is_empty());
            });
        }
        let mut ok = 0;
        while let Some(result) = tasks.join_next().await {
            result.expect("client task");
            ok += 1;
        }
        ok
    });
    assert_eq!(ok, 1000);
    still_serving(&server);
}

#[test]
fn a_line_without_end_gets_one_error_stays_usable_and_memory_stays_bounded() {
    let server = Server::start(&[]);
    let mut client = Client::new(server.addr);
    let before = server.rss_kib();
    // 64 MiB with no line end, far more than any buffer the server may keep.
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..64 {
        client.send(&chunk);
    }
    client.send(b"\n");
    client.expect(tcplab_core::protocol::TOO_LONG_REPLY);
    client.echo("after the flood");
    let grown = server.rss_kib().saturating_sub(before);
    assert!(
        grown < 8 * 1024,
        "server grew by {grown} KiB for one long line"
    );
    still_serving(&server);
}

#[test]
fn binary_bytes_nul_and_invalid_utf8_are_echoed_exactly() {
    let server = Server::start(&[]);
    let mut client = Client::new(server.addr);
    client.send(b"a\0b\xff\xfe\x80 z\n");
    assert_eq!(client.line(), b"You said 'a\0b\xff\xfe\x80 z'.\n");
}

#[test]
fn a_client_reset_in_the_middle_of_a_reply_disturbs_nobody() {
    let server = Server::start(&[]);
    let mut bystander = Client::new(server.addr);
    let mut client = Client::new(server.addr);
    // Many lines, so replies are still being written when the RST arrives.
    let burst = "spam spam spam spam spam spam spam spam\n".repeat(20_000);
    client.send(burst.as_bytes());
    socket2::SockRef::from(&client.stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
    bystander.echo("unharmed");
    still_serving(&server);
}

#[test]
fn half_close_gets_every_reply_then_the_servers_fin() {
    let server = Server::start(&[]);
    let mut client = Client::new(server.addr);
    client.send(b"one\ntwo\nthree\n");
    client.stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        client.expect_eof(),
        b"You said 'one'.\nYou said 'two'.\nYou said 'three'.\n"
    );
    still_serving(&server);
}

#[test]
fn an_idle_client_is_closed_after_the_idle_timeout() {
    let server = Server::start(&["--idle-timeout", "1"]);
    let mut client = Client::new(server.addr);
    assert_eq!(client.expect_eof(), b"idle timeout: closing\n");
    still_serving(&server);
}

#[test]
fn a_sequential_server_closes_a_client_idle_since_its_last_line() {
    // The sequential lane dates the quiet time from its reads that time out, not from
    // a clock read per line: a client that talked and then went quiet is still closed.
    let server = Server::start(&["--sequential", "--idle-timeout", "1"]);
    let mut client = Client::new(server.addr);
    client.echo("one");
    assert_eq!(client.expect_eof(), b"idle timeout: closing\n");
    still_serving(&server);
}

#[test]
fn two_hundred_clients_that_connect_and_reset_at_once() {
    let server = Server::start(&["--backlog", "256"]);
    let clients: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(server.addr).expect("connect"))
        .collect();
    for c in clients {
        socket2::SockRef::from(&c)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }
    still_serving(&server);
}

/// How long after the client's FIN the server's socket for that client left
/// CLOSE_WAIT (into LAST_ACK, or gone), watched through sock_diag with the kernel
/// filtering on the server's port (fast even beside thousands of TIME_WAIT sockets).
/// Panics if it is still in CLOSE_WAIT after `limit`.
fn time_to_leave_close_wait(server: &Server, limit: Duration) -> Duration {
    use tcplab::probe::sockdiag::{SockDiag, ALL_STATES};
    let mut diag = SockDiag::open().expect("sock_diag");
    diag.filter_ports(&[server.addr.port()]);
    let mut client = Client::new(server.addr);
    client.echo("bye soon");
    let client_addr = client.stream.local_addr().unwrap();
    client.stream.shutdown(Shutdown::Write).unwrap();
    let sent_fin = Instant::now();
    let left = loop {
        let states: Vec<u8> = diag
            .dump(ALL_STATES)
            .expect("dump")
            .into_iter()
            .filter(|s| s.local == server.addr && s.remote == client_addr)
            .map(|s| s.state)
            .collect();
        let elapsed = sent_fin.elapsed();
        if states.iter().all(|&s| s == support::TCP_LAST_ACK) {
            break elapsed;
        }
        assert!(
            elapsed < limit,
            "server socket still in state {states:?} (8 = CLOSE_WAIT) {limit:?} after our FIN"
        );
        std::thread::yield_now();
    };
    assert_eq!(client.expect_eof(), b"");
    left
}

#[test]
fn eof_without_quit_leaves_no_close_wait_behind() {
    let server = Server::start(&[]);
    // Every time, the server closes: never left in CLOSE_WAIT (2 s is "never" here).
    // And promptly: within 100 ms. The fastest of five tries must meet that, so a
    // moment of scheduling noise on a loaded 2-core CI machine does not decide it.
    let times: Vec<Duration> = (0..5)
        .map(|_| time_to_leave_close_wait(&server, Duration::from_secs(2)))
        .collect();
    let fastest = times.iter().min().unwrap();
    assert!(
        *fastest < Duration::from_millis(100),
        "the server's socket left CLOSE_WAIT only after {times:?}"
    );
}

#[test]
fn busy_server_tells_the_client_and_closes() {
    let server = Server::start(&["--max-conns", "1"]);
    let mut first = Client::new(server.addr);
    let mut second = Client::raw(server.addr);
    assert_eq!(second.expect_eof(), tcplab_core::protocol::BUSY_NOTICE);
    first.echo("still mine");
}

#[test]
fn listens_on_ipv6_loopback() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        panic!("IPv6 loopback is not available on this machine");
    }
    let server = Server::start_with(&["--listen", "[::1]:0", "--quiet"], &[]);
    assert!(server.addr.is_ipv6());
    let mut client = Client::new(server.addr);
    client.echo("over v6");
}

/// A server started with its stderr (the connection log) piped, read line by line on a
/// thread so that a test waits for a log line with a deadline instead of sleeping.
struct LoggingServer {
    child: std::process::Child,
    addr: SocketAddr,
    lines: std::sync::mpsc::Receiver<String>,
    /// Every log line received so far, in order.
    seen: Vec<String>,
}

impl LoggingServer {
    fn start() -> LoggingServer {
        use std::process::{Command, Stdio};
        let mut child = Command::new(support::tcplab_bin())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let addr = first.trim()["listening on ".len()..].parse().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        LoggingServer {
            child,
            addr,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (at most [`TIMEOUT`]) for the log line `{peer} {event}`, keeping every line.
    #[track_caller]
    fn wait_for(&mut self, peer: &str, event: &str) {
        let wanted = format!("{peer} {event}");
        let deadline = Instant::now() + TIMEOUT;
        while !self.seen.iter().any(|l| l.ends_with(&wanted)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "no log line {wanted:?} within {TIMEOUT:?}: {:#?}",
                    self.seen
                ),
            }
        }
    }

    /// The log lines of `peer`, each checked for a time of day (HH:MM:SS.uuuuuu) and the
    /// peer, returned without the time.
    #[track_caller]
    fn lines_of(&self, peer: &str) -> Vec<String> {
        self.seen
            .iter()
            .filter(|l| l.split(' ').nth(1) == Some(peer))
            .map(|l| {
                let (stamp, rest) = l.split_once(' ').unwrap();
                let b = stamp.as_bytes();
                let digits = [0, 1, 3, 4, 6, 7, 9, 10, 11, 12, 13, 14];
                assert!(
                    b.len() == 15
                        && b[2] == b':'
                        && b[5] == b':'
                        && b[8] == b'.'
                        && digits.iter().all(|&i| b[i].is_ascii_digit()),
                    "no HH:MM:SS.uuuuuu time at the start of {l:?}"
                );
                rest.to_string()
            })
            .collect()
    }
}

impl Drop for LoggingServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn logs_each_connection_event_with_timestamp_and_peer() {
    let mut server = LoggingServer::start();
    // Each client ends before the next starts (we wait for its `closed` line), so each
    // is accepted with 1 open.

    // quit: the server closes first.
    let mut quitter = Client::new(server.addr);
    let quit_peer = quitter.stream.local_addr().unwrap().to_string();
    quitter.echo("hello");
    quitter.send(b"quit\n");
    quitter.expect_eof();
    server.wait_for(
        &quit_peer,
        "closed: server closed first (client sent 'quit')",
    );

    // Half-close: the client's FIN first, its reply still arrives, then the server's FIN.
    let mut halver = Client::new(server.addr);
    let eof_peer = halver.stream.local_addr().unwrap().to_string();
    halver.send(b"bye\n");
    halver.stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(halver.expect_eof(), b"You said 'bye'.\n");
    server.wait_for(
        &eof_peer,
        "closed: client closed first (EOF), server closed at once",
    );

    // Reset: SO_LINGER {on, 0} then close() sends RST instead of FIN.
    let mut resetter = Client::new(server.addr);
    let reset_peer = resetter.stream.local_addr().unwrap().to_string();
    resetter.echo("x");
    socket2::SockRef::from(&resetter.stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(resetter);
    server.wait_for(&reset_peer, "closed: client reset the connection (RST)");

    // shutdown from loopback: this client is closed, then the server exits 0.
    let mut stopper = Client::new(server.addr);
    let stop_peer = stopper.stream.local_addr().unwrap().to_string();
    stopper.echo("hello");
    stopper.send(b"shutdown\n");
    stopper.expect_eof();
    server.wait_for(
        &stop_peer,
        "closed: server closed first (client sent 'shutdown')",
    );
    assert_eq!(server.child.wait().unwrap().code(), Some(0));

    let expect = |peer: &str, events: &[&str]| {
        let want: Vec<String> = events.iter().map(|e| format!("{peer} {e}")).collect();
        assert_eq!(server.lines_of(peer), want, "log of {peer}");
    };
    expect(
        &quit_peer,
        &[
            "accepted (1 open)",
            "line 'hello'",
            "quit",
            "closed: server closed first (client sent 'quit')",
        ],
    );
    expect(
        &eof_peer,
        &[
            "accepted (1 open)",
            "line 'bye'",
            "eof",
            "closed: client closed first (EOF), server closed at once",
        ],
    );
    // The reset is the close: one line says both.
    expect(
        &reset_peer,
        &[
            "accepted (1 open)",
            "line 'x'",
            "closed: client reset the connection (RST)",
        ],
    );
    expect(
        &stop_peer,
        &[
            "accepted (1 open)",
            "line 'hello'",
            "shutdown",
            "closed: server closed first (client sent 'shutdown')",
        ],
    );
}

#[test]
fn max_line_accepts_the_limit_and_rejects_one_byte_more() {
    let server = Server::start(&["--max-line", "4"]);
    let mut client = Client::new(server.addr);
    client.echo("abcd");
    client.send(b"abcde\n");
    client.expect(tcplab_core::protocol::TOO_LONG_REPLY);
    // The connection goes on; \r\n is a terminator, not part of the line.
    client.send(b"wxyz\r\n");
    client.expect(b"You said 'wxyz'.\n");
    client.send(b"quit\n");
    client.expect_eof();
}

#[test]
fn reuseport_lets_two_servers_share_a_port_and_without_it_the_second_fails() {
    let first = Server::start(&["--reuseport"]);
    let port = first.addr.port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let second = Server::start_with(&["--listen", &listen, "--quiet", "--reuseport"], &[]);
    assert_eq!(second.addr, first.addr);
    // The kernel spreads connections over both; every one is served.
    for _ in 0..4 {
        Client::new(first.addr).echo("shared");
    }

    let alone = Server::start(&[]);
    let taken = alone.addr.to_string();
    let out = support::tcplab("serve", &["--listen", &taken, "--quiet"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!(
            "tcplab: listen on {taken}: Address already in use (os error 98) (another socket \
             holds this port; `ss -tanp sport = :PORT` shows it. A TIME_WAIT socket blocks the \
             port unless both old and new sockets set SO_REUSEADDR)"
        )
    );
    assert!(out.stdout.is_empty(), "no `listening on` line: {out:?}");
}
