//! Closing: which side closes first, whether the passive side's FIN carries the ACK of
//! the first FIN, and the TIME_WAIT that blocks a rebind.

use std::time::Duration;

use tcplab_core::timeline::Role;

use super::{errno_name, joined, nothing, Finding, Outcome, Sock, Stage};
use crate::lab::run::Host;

/// How long the passive side waits after the EOF before closing, for the four-segment
/// close: longer than the delayed-ACK timer (40 ms minimum, 200 ms at most), so the ACK
/// of the first FIN leaves alone before the second FIN.
const PASSIVE_WAIT: Duration = Duration::from_millis(250);

/// A connection with one line echoed: (client, accepted, listener).
fn echoed_once(stage: &Stage<'_>) -> anyhow::Result<(Sock, Sock, Sock)> {
    let listening = stage.listen(5)?;
    let client = stage.connect(|c| c.write(b"hello\n"))?;
    let (accepted, listening) = stage.accept(listening, |a| a.write(&a.read_exact(6)?))?;
    let client = stage.on(Host::Client, move || {
        client.read_exact(6)?;
        Ok(client)
    })?;
    Ok((client, accepted, listening))
}

/// The client closes first; the server closes `wait` after reading the EOF.
fn client_first(stage: &Stage<'_>, wait: Duration) -> anyhow::Result<Outcome> {
    let (client, accepted, listening) = echoed_once(stage)?;
    let client_addr = client.local()?;
    // The server's thread is waiting in read() before the FIN comes, so that with no
    // wait its close() follows the EOF within microseconds, as a server's would.
    let server = stage.spawn_waiting(Host::Server, move || {
        close_after_eof(accepted, wait)?;
        listening.close();
        Ok(())
    })?;
    stage.on(Host::Client, move || {
        client.close();
        Ok(())
    })?;
    joined(server)?;
    Ok(Outcome::of(client_addr, stage.server))
}

/// Reads the peer's EOF, waits `wait`, closes.
fn close_after_eof(sock: Sock, wait: Duration) -> std::io::Result<()> {
    if !sock.read()?.is_empty() {
        return Err(std::io::Error::other("data instead of the peer's EOF"));
    }
    if !wait.is_zero() {
        sock.sleep(wait);
    }
    sock.close();
    Ok(())
}

/// The client closes first; the server 250 ms after the EOF: four segments.
pub fn client_close(stage: &Stage<'_>) -> anyhow::Result<Outcome> {
    client_first(stage, PASSIVE_WAIT)
}

/// The client closes first; the server at once: its FIN carries the ACK (three).
pub fn client_close_piggyback(stage: &Stage<'_>) -> anyhow::Result<Outcome> {
    client_first(stage, Duration::ZERO)
}

/// The server closes first, right after its reply; the client 250 ms after the EOF.
pub fn server_close(stage: &Stage<'_>) -> anyhow::Result<Outcome> {
    let (client, accepted, listening) = echoed_once(stage)?;
    let client_addr = client.local()?;
    let client =
        stage.spawn_waiting(Host::Client, move || close_after_eof(client, PASSIVE_WAIT))?;
    stage.on(Host::Server, move || {
        accepted.close();
        listening.close();
        Ok(())
    })?;
    joined(client)?;
    Ok(Outcome::of(client_addr, stage.server))
}

/// The server closes first and keeps TIME_WAIT on its port; a new listener on that
/// port fails with EADDRINUSE, and binds once SO_REUSEADDR is set on it too (the old
/// socket had it: Linux lets a bind share the port with a TIME_WAIT socket only when
/// both set it).
pub fn time_wait_rebind(stage: &Stage<'_>) -> anyhow::Result<Outcome> {
    let server = stage.server;
    let listening = stage.listen(5)?;
    let client = stage.connect(nothing)?;
    let client_addr = client.local()?;
    // The client closes 250 ms after the EOF, as in `server_close`. At once, its FIN
    // would follow its ACK of the server's FIN by microseconds, and the two, sent from
    // two CPUs, race on lo: seen in CI, the FIN overtook the ACK, or reached the server's
    // socket while the ACK was turning it into a FIN_WAIT2 mini-socket and was dropped
    // (retransmitted after the RTO).
    let client =
        stage.spawn_waiting(Host::Client, move || close_after_eof(client, PASSIVE_WAIT))?;
    stage.on(Host::Server, move || {
        let accepted = listening.accept()?;
        accepted.close();
        listening.close();
        Ok(())
    })?;
    joined(client)?;
    let srv = stage.recorder(Role::Server);
    let (plain, reused) = stage.on(Host::Server, move || {
        let plain = Sock::new(&srv, server)?;
        let plain_bind = plain.bind(server);
        plain.close();
        let again = Sock::new(&srv, server)?;
        again.set("SO_REUSEADDR", |s| s.set_reuse_address(true))?;
        let reused = again.bind(server).and_then(|()| again.listen(5));
        again.close();
        Ok((plain_bind, reused))
    })?;
    let mut outcome = Outcome::of(client_addr, server);
    let result = |r: &std::io::Result<()>| match r {
        Ok(()) => "bound".to_string(),
        Err(e) => errno_name(e),
    };
    outcome.errno = plain.as_ref().err().map(errno_name);
    outcome.findings = vec![
        Finding::equal(
            "bind() beside TIME_WAIT, no SO_REUSEADDR",
            "EADDRINUSE",
            result(&plain),
        ),
        Finding::equal(
            "bind() beside TIME_WAIT, SO_REUSEADDR on both",
            "bound",
            result(&reused),
        ),
    ];
    Ok(outcome)
}
