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
