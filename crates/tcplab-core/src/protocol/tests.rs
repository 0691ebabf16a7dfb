use super::*;
use proptest::prelude::*;

/// An owned copy of [`Event`], to compare runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    Line(Vec<u8>),
    TooLong,
    Quit,
    Shutdown,
    ShutdownRefused,
}

fn own(event: Event<'_>) -> Owned {
    match event {
        Event::Line(l) => Owned::Line(l.to_vec()),
        Event::TooLong => Owned::TooLong,
        Event::Quit => Owned::Quit,
        Event::Shutdown => Owned::Shutdown,
        Event::ShutdownRefused => Owned::ShutdownRefused,
    }
}

/// Feeds `chunks` one after the other; returns replies, events and the last status.
/// Also checks the memory bound after every feed.
#[track_caller]
fn run(config: Config, chunks: &[&[u8]]) -> (Vec<u8>, Vec<Owned>, Status) {
    let mut session = Session::new(config);
    let mut out = Vec::new();
    let mut events = Vec::new();
    let mut status = Status::Open;
    for chunk in chunks {
        status = session.feed(chunk, &mut out, |e| events.push(own(e)));
        assert!(session.buffered() <= config.max_line.max(1));
    }
    (out, events, status)
}

#[track_caller]
fn replies(chunks: &[&[u8]]) -> String {
    String::from_utf8(run(Config::default(), chunks).0).unwrap()
}

#[test]
fn echoes_a_line_with_each_terminator() {
    assert_eq!(replies(&[b"hello\n"]), "You said 'hello'.\n");
    assert_eq!(replies(&[b"hello\r\n"]), "You said 'hello'.\n");
    assert_eq!(replies(&[b"hello\r"]), "You said 'hello'.\n");
    assert_eq!(
        replies(&[b"a\rb\nc\r\nd\r"]),
        "You said 'a'.\nYou said 'b'.\nYou said 'c'.\nYou said 'd'.\n"
    );
}

#[test]
fn crlf_split_across_reads_is_one_terminator() {
    // The classic example's bug: it stops at \r and leaves \n unread.
    assert_eq!(
        replies(&[b"hello\r", b"\nworld\r", b"\n"]),
        "You said 'hello'.\nYou said 'world'.\n"
    );
}

#[test]
fn two_carriage_returns_are_two_terminators_and_the_empty_line_is_ignored() {
    assert_eq!(replies(&[b"a\r\rb\n"]), "You said 'a'.\nYou said 'b'.\n");
}

#[test]
fn trims_whitespace_and_ignores_empty_lines() {
    assert_eq!(
        replies(&[b"  hi there \t\n\n   \n"]),
        "You said 'hi there'.\n"
    );
}

#[test]
fn an_unterminated_line_gets_no_reply_yet() {
    let (out, events, status) = run(Config::default(), &[b"hel", b"lo"]);
    assert!(out.is_empty());
    assert!(events.is_empty());
    assert_eq!(status, Status::Open);
}

#[test]
fn echoes_binary_bytes_exactly() {
    let (out, events, _) = run(Config::default(), &[b"a\0b\xff\xfe c\n"]);
    assert_eq!(out, b"You said 'a\0b\xff\xfe c'.\n");
    assert_eq!(events, vec![Owned::Line(b"a\0b\xff\xfe c".to_vec())]);
}

#[test]
fn quit_ends_the_session_and_ignores_what_follows() {
    let (out, events, status) = run(Config::default(), &[b"one\nquit\ntwo\n", b"three\n"]);
    assert_eq!(out, b"You said 'one'.\n");
    assert_eq!(events, vec![Owned::Line(b"one".to_vec()), Owned::Quit]);
    assert_eq!(status, Status::Quit);
}

#[test]
fn quit_with_crlf_and_spaces() {
    let (_, _, status) = run(Config::default(), &[b"  quit \r\n"]);
    assert_eq!(status, Status::Quit);
}

#[test]
fn commands_are_case_sensitive_like_the_classic_example() {
    assert_eq!(replies(&[b"QUIT\n"]), "You said 'QUIT'.\n");
}

#[test]
fn shutdown_from_a_peer_that_may() {
    let (out, events, status) = run(Config::default(), &[b"shutdown\n"]);
    assert!(out.is_empty());
    assert_eq!(events, vec![Owned::Shutdown]);
    assert_eq!(status, Status::Shutdown);
}

#[test]
fn shutdown_from_a_peer_that_may_not_is_refused_and_the_session_goes_on() {
    let config = Config {
        may_shutdown: false,
        ..Config::default()
    };
    let (out, events, status) = run(config, &[b"shutdown\nhi\n"]);
    let mut expected = SHUTDOWN_REFUSED_REPLY.to_vec();
    expected.extend_from_slice(b"You said 'hi'.\n");
    assert_eq!(out, expected);
    assert_eq!(
        events,
        vec![Owned::ShutdownRefused, Owned::Line(b"hi".to_vec())]
    );
    assert_eq!(status, Status::Open);
}

#[test]
fn shutdown_policy_allows_only_loopback_peers_by_default() {
    let allowed = |a: &str, remote| shutdown_allowed(a.parse().unwrap(), remote);
    assert!(allowed("127.0.0.1", false));
    assert!(allowed("127.8.9.10", false));
    assert!(allowed("::1", false));
    assert!(allowed("::ffff:127.0.0.1", false));
    assert!(!allowed("192.0.2.7", false));
    assert!(!allowed("2001:db8::7", false));
    assert!(!allowed("::ffff:192.0.2.7", false));
    assert!(allowed("192.0.2.7", true));
}

#[test]
fn a_line_at_the_limit_is_accepted_and_one_byte_more_is_not() {
    let config = Config {
        max_line: 4,
        ..Config::default()
    };
    let (out, _, _) = run(config, &[b"abcd\n"]);
    assert_eq!(out, b"You said 'abcd'.\n");
    let (out, events, _) = run(config, &[b"abcde\nok\n"]);
    let mut expected = TOO_LONG_REPLY.to_vec();
    expected.extend_from_slice(b"You said 'ok'.\n");
    assert_eq!(out, expected);
    assert_eq!(events, vec![Owned::TooLong, Owned::Line(b"ok".to_vec())]);
}

#[test]
fn an_overlong_line_is_reported_once_and_discarded_to_its_end() {
    let config = Config {
        max_line: 8,
        ..Config::default()
    };
    let long = vec![b'x'; 100];
    let (out, events, status) = run(config, &[&long, &long, &long, b"tail\r", b"\nnext\n"]);
    let mut expected = TOO_LONG_REPLY.to_vec();
    expected.extend_from_slice(b"You said 'next'.\n");
    assert_eq!(out, expected);
    assert_eq!(events, vec![Owned::TooLong, Owned::Line(b"next".to_vec())]);
    assert_eq!(status, Status::Open);
}

#[test]
fn a_mebibyte_without_newline_stays_bounded() {
    let mut session = Session::new(Config::default());
    let mut out = Vec::new();
    let chunk = vec![b'a'; 4096];
    for _ in 0..256 {
        session.feed(&chunk, &mut out, |_| {});
        assert!(session.buffered() <= DEFAULT_MAX_LINE);
    }
    assert_eq!(out, TOO_LONG_REPLY);
}

#[test]
fn banner_has_the_classic_shape() {
    let text = std::str::from_utf8(BANNER).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), BANNER_LINES);
    assert_eq!(lines[0], "");
    assert_eq!(
        lines[2],
        "To quit, type 'quit'. To shut down the server type 'shutdown'."
    );
}

/// Bytes that exercise the framing: terminators, whitespace, commands, anything.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b" ".to_vec()),
        Just(b"quit".to_vec()),
        Just(b"shutdown".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..20),
        proptest::collection::vec(Just(b'z'), 0..40),
    ];
    proptest::collection::vec(token, 0..40).prop_map(|t| t.concat())
}

proptest! {
    #[test]
    fn cutting_the_stream_anywhere_changes_nothing(
        data in stream(),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
        max_line in 1usize..32,
        may_shutdown in any::<bool>(),
    ) {
        let config = Config { max_line, may_shutdown };
        let whole = run(config, &[&data]);
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for p in points {
            chunks.push(&data[start..p]);
            start = p;
        }
        chunks.push(&data[start..]);
        prop_assert_eq!(run(config, &chunks), whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(
        data in proptest::collection::vec(any::<u8>(), 0..4096),
        max_line in 0usize..64,
    ) {
        let config = Config { max_line, may_shutdown: false };
        run(config, &[&data]);
    }
}

#[test]
fn a_quit_ended_by_a_last_cr_awaits_its_lf() {
    let feed = |chunks: &[&[u8]]| {
        let mut s = Session::new(Config::default());
        for c in chunks {
            s.feed(c, &mut Vec::new(), |_| {});
        }
        s.awaits_lf()
    };
    assert!(feed(&[b"hello\nquit\r"]));
    assert!(feed(&[b"qu", b"it\r"]));
    assert!(!feed(&[b"quit\r\n"]));
    assert!(!feed(&[b"quit\n"]));
    assert!(!feed(&[b"quit\rmore"]));
    assert!(!feed(&[b"hello\r"]), "not finished: nothing to await");
}
