//! Opening: the handshake, simultaneous open, a self-connect, a full listen queue and a
//! lost third ACK.

use std::net::SocketAddr;
use std::time::Duration;

use tcplab_core::timeline::{flags, Connection, Item, Role};

use super::{joined, nothing, Finding, Outcome, Sock, Stage};
use crate::lab::run::Host;

/// The three-way handshake; the lab stops watching while both ends are ESTABLISHED.
pub fn handshake(stage: &Stage<'_>) -> anyhow::Result<Outcome> {
    let listening = stage.listen(5)?;
    let client = stage.connect(nothing)?;
    let (accepted, listening) = stage.accept(listening, nothing)?;
    let mut outcome = Outcome::of(client.local()?, stage.server);
    outcome.keep = vec![client.socket, accepted.socket, listening.socket];
    Ok(outcome)
}

/// Both ends connect to each other at once (each bound to the port the other names):
/// the wire holds the first SYN until one exists in each direction, so the SYNs cross.
pub fn simultaneous_open(stage: &Stage<'_>) -> anyhow::Result<Outcome> {
    let server = stage.server;
    let client = SocketAddr::new(stage.client_ip(), server.port());
    let (srv, cli) = (stage.recorder(Role::Server), stage.recorder(Role::Client));
    let open = |rec: super::Recorder, me: SocketAddr, peer: SocketAddr| {
        move || -> std::io::Result<Sock> {
            let sock = Sock::new(&rec, me)?;
            sock.bind(me)?;
            sock.connect(peer)?;
            Ok(sock)
        }
    };
    let server_side = stage.spawn(Host::Server, open(srv, server, client))?;
    let client_side = stage.spawn(Host::Client, open(cli, client, server))?;
    let (c, s) = (joined(client_side)?, joined(server_side)?);
    let mut outcome = Outcome::of(client, server);
    outcome.keep = vec![c.socket, s.socket];
    Ok(outcome)
}

/// One socket bound to port P connects to P on its own address: its SYN arrives at
/// itself, so it goes SYN_SENT → SYN_RECV → ESTABLISHED alone, connected to itself.
pub fn self_connect(stage: &Stage<'_>) -> anyhow::Result<Outcome> {
    let cli = stage.recorder(Role::Client);
    let addr = SocketAddr::new(stage.client_ip(), stage.server.port());
    let sock = stage.on(Host::Client, move || {
        let sock = Sock::new(&cli, addr)?;
        sock.bind(addr)?;
        sock.connect(addr)?;
        sock.write(b"hello\n")?;
        sock.read_exact(6)?;
        Ok(sock)
    })?;
    let mut outcome = Outcome::of(addr, addr);
    outcome.keep = vec![sock.socket];
    Ok(outcome)
}

/// listen(1) and no accept(): two connections complete and wait in the accept queue;
/// the third client's SYN is dropped (the queue is full) and retransmitted every second
/// (`tcp_syn_linear_timeouts`); the server accepts one 1.5 s later, between the
/// second and the third SYN, which gets in.
pub fn backlog_overflow(stage: &Stage<'_>) -> anyhow::Result<Outcome> {
    let cli = stage.recorder(Role::Client);
    let server = stage.server;
    let listening = stage.listen(1)?;
    // Two clients fill the queue (their calls are not the timeline's: it shows the
    // third). A quiet recorder would hide them; they are plain sockets instead.
    let fill = stage.on(Host::Client, move || {
        (0..2)
            .map(|_| std::net::TcpStream::connect_timeout(&server, super::CALL_TIMEOUT))
            .collect::<std::io::Result<Vec<_>>>()
    })?;
    // Bound first, so its address is known before connect() returns.
    let any = SocketAddr::new(stage.client_ip(), 0);
    let sock = stage.on(Host::Client, move || {
        let sock = Sock::new(&cli, any)?;
        sock.bind(any)?;
        Ok(sock)
    })?;
    let third = sock.local()?;
    let client = stage.spawn(Host::Client, move || {
        sock.connect(server)?;
        Ok(sock)
    })?;
    // The SYNs at 0 s and 1 s are dropped; the server accepts a queued connection
    // before the one at 2 s.
    listening.sleep(Duration::from_millis(1500));
    let (first, listening) = stage.accept(listening, nothing)?;
    let client = joined(client)?;
    let (second, third_accepted, listening) = stage.on(Host::Server, move || {
        let second = listening.accept()?;
        let third = listening.accept()?;
        Ok((second, third, listening))
    })?;
    let mut outcome = Outcome::of(third, server);
    outcome.keep = vec![
        client.socket,
        first.socket,
        second.socket,
        third_accepted.socket,
        listening.socket,
    ];
    drop(fill);
    Ok(outcome)
}

/// The wire loses the handshake's third ACK, every copy of it: the client is
/// ESTABLISHED, the server holds only a request socket in SYN_RECV (no tracepoint sees
/// it; sock_diag does) and resends its SYN,ACK 1 s later, whose ACK is lost too. The
/// client's first data, 1.5 s after connect(), carries the ACK the server waits for.
pub fn syn_recv_stuck(stage: &Stage<'_>) -> anyhow::Result<Outcome> {
    let listening = stage.listen(5)?;
    let client = stage.connect(|c| {
        c.sleep(Duration::from_millis(1500));
        c.write(b"hello\n")
    })?;
    let (accepted, listening) = stage.accept(listening, |a| a.read_exact(6).map(drop))?;
    let mut outcome = Outcome::of(client.local()?, stage.server);
    outcome.keep = vec![client.socket, accepted.socket, listening.socket];
    Ok(outcome)
}

/// The backlog experiment's own check: the client's SYNs came about a second apart.
pub fn verify_syn_every_second(conn: &Connection) -> Vec<Finding> {
    let syns: Vec<u64> = conn
        .entries
        .iter()
        .filter_map(|e| match &e.item {
            Item::Segment(s) if s.from == Role::Client && s.segment.flags == flags::SYN => {
                Some(s.segment.ts_ns)
            }
            _ => None,
        })
        .collect();
    let gaps: Vec<u64> = syns.windows(2).map(|w| w[1].saturating_sub(w[0])).collect();
    let ok = gaps.len() == 2
        && gaps
            .iter()
            .all(|&g| (900_000_000..1_600_000_000).contains(&g));
    let seen = if gaps.is_empty() {
        "no SYN retransmitted".to_string()
    } else {
        let text: Vec<String> = gaps
            .iter()
            .map(|&g| format!("{:.2} s", g as f64 / 1e9))
            .collect();
        format!("retransmitted after {}", text.join(", then "))
    };
    vec![Finding {
        what: "the third client's SYN".into(),
        expected: "dropped twice, retransmitted every second (about 1 s apart)".into(),
        seen,
        ok,
    }]
}
