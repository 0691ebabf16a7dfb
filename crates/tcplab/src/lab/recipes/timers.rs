//! Timers that end a connection nobody closes: keepalive.

use std::time::Duration;

use tcplab_core::timeline::Role;

use super::{errno_name, nothing, Outcome, Stage};
use crate::lab::run::Host;

/// Keepalive with short timers (idle 1 s, interval 1 s, 3 probes) on the client, and
/// the wire cut after the handshake: three unanswered probes, then the client gives
/// up with a RST and its blocked read() returns ETIMEDOUT. The server never learns:
/// it stays ESTABLISHED.
pub fn keepalive_timeout(stage: &Stage<'_>) -> anyhow::Result<Outcome> {
    let cli = stage.recorder(Role::Client);
    let listening = stage.listen(5)?;
    let client = stage.connect(move |client| {
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(1))
            .with_interval(Duration::from_secs(1))
            .with_retries(3);
        // One call of socket2 sets all four; the timeline shows them as a C program
        // makes them.
        for option in ["SO_KEEPALIVE 1", "TCP_KEEPIDLE 1", "TCP_KEEPINTVL 1"] {
            cli.call(format!("setsockopt({option})"));
        }
        client.set("TCP_KEEPCNT 3", |s| s.set_tcp_keepalive(&keepalive))
    })?;
    let client_addr = client.local()?;
    let (accepted, listening) = stage.accept(listening, nothing)?;
    // The read waits longer than the keepalive's 4 s (its timeout is 10 s): what ends
    // it is the kernel's verdict.
    let read = stage.on(Host::Client, move || Ok((client.read(), client)))?;
    let (result, client) = read;
    let mut outcome = Outcome::of(client_addr, stage.server);
    outcome.errno = Some(match result {
        Ok(bytes) if bytes.is_empty() => "EOF".to_string(),
        Ok(_) => "data".to_string(),
        Err(e) => errno_name(&e),
    });
    outcome.keep = vec![client.socket, accepted.socket, listening.socket];
    Ok(outcome)
}
