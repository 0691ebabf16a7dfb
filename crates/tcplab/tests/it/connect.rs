//! `tcplab connect` and `tcplab lab`, run as the real binary.

use std::process::Command;

use crate::support::{self, Server};

fn connect(args: &[&str]) -> std::process::Output {
    support::tcplab("connect", args)
}

#[test]
fn connect_to_a_closed_port_exits_with_the_refused_code() {
    // A port that was free a moment ago: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = format!("127.0.0.1:{port}");
    let out = connect(&[&target, "--send", "hello"]);
    assert_eq!(out.status.code(), Some(3), "exit code for refused");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!(
            "tcplab: connect {target}: connection refused (no listener on that port: \
             the kernel answered the SYN with RST)"
        )
    );
}

#[test]
fn scripted_session_prints_what_the_server_sent() {
    let server = Server::start(&[]);
    let target = server.addr.to_string();
    let out = connect(&[&target, "--send", "hello", "--send", "quit"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let mut expected = tcplab_core::protocol::BANNER.to_vec();
    expected.extend_from_slice(b"You said 'hello'.\n");
    assert_eq!(out.stdout, expected);
}

#[test]
fn every_close_style_ends_cleanly() {
    let server = Server::start(&[]);
    let target = server.addr.to_string();
    for style in ["fin", "half", "rst", "wait"] {
        let lines: &[&str] = if style == "wait" {
            &["--send", "hi", "--send", "quit"]
        } else {
            &["--send", "hi"]
        };
        let mut args = vec![target.as_str()];
        args.extend_from_slice(lines);
        args.extend_from_slice(&["--close", style, "--crlf"]);
        let out = connect(&args);
        assert_eq!(out.status.code(), Some(0), "--close {style}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("You said 'hi'."));
    }
}

#[test]
fn a_reset_by_the_server_exits_with_the_reset_code() {
    // A server that accepts and aborts: SO_LINGER 0 then close.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let aborter = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        socket2::SockRef::from(&stream)
            .set_linger(Some(std::time::Duration::ZERO))
            .unwrap();
    });
    let out = connect(&[&target, "--send", "hello"]);
    aborter.join().unwrap();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("connection reset by peer"));
}

#[test]
fn interactive_mode_sends_stdin_lines_and_exits_when_the_server_closes() {
    use std::io::Write as _;
    use std::process::Stdio;
    let server = Server::start(&[]);
    let mut child = Command::new(support::tcplab_bin())
        .args(["connect", &server.addr.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The stdin pipe stays open: the client must exit because the server closed, as
    // telnet does, not because its input ended.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hello\r\nquit\n").unwrap();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let mut expected = tcplab_core::protocol::BANNER.to_vec();
    expected.extend_from_slice(b"You said 'hello'.\n");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&expected)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("connection closed by the server"));
}

#[test]
fn a_server_that_never_answers_exits_with_the_timeout_code() {
    // The kernel completes the handshake into the accept queue; the application never
    // accepts, reads or writes, so the banner never comes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let out = connect(&[&target, "--send", "hi", "--timeout", "0.3"]);
    assert_eq!(out.status.code(), Some(5), "exit code for timeout: {out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!(
            "tcplab: read from {target}: timed out (the connection is established but the \
             server sent nothing in time: it did not answer)"
        )
    );
    assert!(out.stdout.is_empty(), "{out:?}");
    drop(listener);
}

#[test]
fn a_syn_dropped_by_a_full_accept_queue_is_a_connect_timeout() {
    use socket2::{Domain, Socket, Type};
    // listen(0): the accept queue holds one connection; with it full, Linux drops
    // every further SYN (tcp_conn_request: sk_acceptq_is_full, LISTENOVERFLOWS), and
    // the next SYN retransmission is 1 s away, far past the 0.3 s allowed.
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let _filler = std::net::TcpStream::connect(addr).unwrap();
    // Wait until the filler sits in the accept queue: the listener polls readable.
    wait_readable(&listener, std::time::Duration::from_secs(5));
    let target = addr.to_string();
    let out = connect(&[&target, "--send", "hi", "--timeout", "0.3"]);
    assert_eq!(out.status.code(), Some(5), "exit code for timeout: {out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!(
            "tcplab: connect {target}: timed out (no SYN,ACK in time: the SYN or its answer \
             was lost or dropped, e.g. by a firewall or because the listener's accept queue \
             is full)"
        )
    );
}

/// Blocks until `socket` is readable (for a listener: a connection is queued), at most
/// `limit`.
fn wait_readable(socket: &impl std::os::fd::AsRawFd, limit: std::time::Duration) {
    let mut pfd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(limit.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: poll reads and writes exactly the one pollfd we pass.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    assert_eq!(
        n, 1,
        "the listener did not become readable within {limit:?}"
    );
}

#[test]
fn invalid_timeouts_are_usage_errors_not_crashes() {
    // `-inf` does not look like a number to clap, so it goes in the `=` form.
    for (arg, bad) in [
        (vec!["--timeout", "inf"], "inf"),
        (vec!["--timeout", "-1"], "-1"),
        (vec!["--timeout", "nan"], "nan"),
        (vec!["--timeout", "1e30"], "1e30"),
        (vec!["--timeout=-inf"], "-inf"),
    ] {
        let mut args = vec!["127.0.0.1:9", "--send", "hi"];
        args.extend(arg);
        let out = connect(&args);
        assert_eq!(out.status.code(), Some(2), "--timeout {bad}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with(&format!(
                "error: invalid value '{bad}' for '--timeout <TIMEOUT>': expected a number \
                 of seconds from 0 to 1000000"
            )),
            "--timeout {bad}: {stderr}"
        );
    }
}
