//! Parsing `trace_pipe` text lines of our four tracepoints. Pure: never panics on
//! malformed input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// One parsed line of `trace_pipe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceEvent {
    /// `sock:inet_sock_set_state` for a TCP socket.
    SetState {
        /// CLOCK_MONOTONIC, ns (µs resolution).
        ts_ns: u64,
        /// Local address (port 0 in SYN_SENT before the port is chosen).
        local: SocketAddr,
        /// Remote address.
        remote: SocketAddr,
        /// Linux `TCP_*` number before.
        old: u32,
        /// Linux `TCP_*` number after.
        new: u32,
    },
    /// `tcp:tcp_send_reset`: this machine sent an RST.
    SendReset {
        /// CLOCK_MONOTONIC, ns.
        ts_ns: u64,
        /// Source of the RST (the endpoint that sends it).
        local: Option<SocketAddr>,
        /// Destination of the RST.
        remote: Option<SocketAddr>,
        /// The kernel's reason (`NO_SOCKET`, `TCP_ABORT_ON_CLOSE`, ...).
        reason: String,
    },
    /// `tcp:tcp_receive_reset`: a socket received an RST.
    ReceiveReset {
        /// CLOCK_MONOTONIC, ns.
        ts_ns: u64,
        /// The receiving socket's address.
        local: SocketAddr,
        /// The peer.
        remote: SocketAddr,
        /// The receiving socket's cookie.
        cookie: Option<u64>,
    },
    /// `tcp:tcp_retransmit_skb`: a segment was retransmitted.
    Retransmit {
        /// CLOCK_MONOTONIC, ns.
        ts_ns: u64,
        /// The sender.
        local: SocketAddr,
        /// The peer.
        remote: SocketAddr,
    },
    /// `CPU:n [LOST k EVENTS]`: the ring buffer overran before we read it.
    Lost {
        /// How many events were lost.
        count: u64,
    },
}

impl TraceEvent {
    /// The event's time, CLOCK_MONOTONIC ns (`None` for a loss notice).
    pub fn ts_ns(&self) -> Option<u64> {
        match self {
            TraceEvent::SetState { ts_ns, .. }
            | TraceEvent::SendReset { ts_ns, .. }
            | TraceEvent::ReceiveReset { ts_ns, .. }
            | TraceEvent::Retransmit { ts_ns, .. } => Some(*ts_ns),
            TraceEvent::Lost { .. } => None,
        }
    }
}

/// Parses one `trace_pipe` line of our events. `None` for anything else (other events,
/// malformed text): never panics.
pub fn parse_line(line: &str) -> Option<TraceEvent> {
    let line = line.trim_end();
    if let Some(rest) = line.strip_prefix("CPU:") {
        let lost = rest.split_once("[LOST ")?.1;
        let count = lost.split_whitespace().next()?.parse().ok()?;
        return Some(TraceEvent::Lost { count });
    }
    for (name, marker) in [
        ("inet_sock_set_state", " inet_sock_set_state: "),
        ("tcp_send_reset", " tcp_send_reset: "),
        ("tcp_receive_reset", " tcp_receive_reset: "),
        ("tcp_retransmit_skb", " tcp_retransmit_skb: "),
    ] {
        let Some((head, fields)) = line.split_once(marker) else {
            continue;
        };
        let ts_ns = parse_ts(head.split_whitespace().last()?)?;
        let f = Fields::new(fields);
        return match name {
            "inet_sock_set_state" => {
                if f.get("protocol")? != "IPPROTO_TCP" {
                    return None;
                }
                let (local, remote) = f.tuple()?;
                Some(TraceEvent::SetState {
                    ts_ns,
                    local,
                    remote,
                    old: linux_state(f.get("oldstate")?)?,
                    new: linux_state(f.get("newstate")?)?,
                })
            }
            "tcp_send_reset" => Some(TraceEvent::SendReset {
                ts_ns,
                local: f.get("src").and_then(parse_sockaddr),
                remote: f.get("dest").and_then(parse_sockaddr),
                reason: f.get("reason").unwrap_or("NOT_SPECIFIED").to_string(),
            }),
            "tcp_receive_reset" => {
                let (local, remote) = f.tuple()?;
                let cookie = f
                    .get("sock_cookie")
                    .and_then(|c| u64::from_str_radix(c, 16).ok());
                Some(TraceEvent::ReceiveReset {
                    ts_ns,
                    local,
                    remote,
                    cookie,
                })
            }
            _ => {
                let (local, remote) = f.tuple()?;
                Some(TraceEvent::Retransmit {
                    ts_ns,
                    local,
                    remote,
                })
            }
        };
    }
    None
}

/// `12345.678901:` → ns.
fn parse_ts(token: &str) -> Option<u64> {
    let token = token.strip_suffix(':').unwrap_or(token);
    let (secs, frac) = token.split_once('.')?;
    let secs: u64 = secs.parse().ok()?;
    if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_ns: u64 = format!("{frac:0<9}").parse().ok()?;
    secs.checked_mul(1_000_000_000)?.checked_add(frac_ns)
}

/// `TCP_FIN_WAIT2` → 5 (include/net/tcp_states.h).
fn linux_state(name: &str) -> Option<u32> {
    const NAMES: [&str; 12] = [
        "TCP_ESTABLISHED",
        "TCP_SYN_SENT",
        "TCP_SYN_RECV",
        "TCP_FIN_WAIT1",
        "TCP_FIN_WAIT2",
        "TCP_TIME_WAIT",
        "TCP_CLOSE",
        "TCP_CLOSE_WAIT",
        "TCP_LAST_ACK",
        "TCP_LISTEN",
        "TCP_CLOSING",
        "TCP_NEW_SYN_RECV",
    ];
    NAMES.iter().position(|n| *n == name).map(|i| i as u32 + 1)
}

/// `127.0.0.1:80` or `[::1]:80` (the kernel's `%pISpc`).
fn parse_sockaddr(s: &str) -> Option<SocketAddr> {
    s.parse().ok()
}

/// The `key=value key=value` part of a line.
/// The `key=value` fields of an event, split once (a line is parsed for up to eight of
/// them: splitting the line again for each was a tenth of a watcher's time under churn).
struct Fields<'a> {
    kv: [(&'a str, &'a str); MAX_FIELDS],
    len: usize,
}

/// More fields than any event we read has (inet_sock_set_state has 10); extra ones are
/// ignored.
const MAX_FIELDS: usize = 16;

impl<'a> Fields<'a> {
    fn new(text: &'a str) -> Fields<'a> {
        let mut f = Fields {
            kv: [("", ""); MAX_FIELDS],
            len: 0,
        };
        for (k, v) in text
            .split_ascii_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .take(MAX_FIELDS)
        {
            f.kv[f.len] = (k, v);
            f.len += 1;
        }
        f
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.kv[..self.len]
            .iter()
            .find_map(|(k, v)| (*k == key).then_some(*v))
    }

    /// The (local, remote) addresses from family/sport/dport/saddr/daddr[v6].
    fn tuple(&self) -> Option<(SocketAddr, SocketAddr)> {
        let sport: u16 = self.get("sport")?.parse().ok()?;
        let dport: u16 = self.get("dport")?.parse().ok()?;
        let (s, d): (IpAddr, IpAddr) = match self.get("family")? {
            "AF_INET" => (
                self.get("saddr")?.parse::<Ipv4Addr>().ok()?.into(),
                self.get("daddr")?.parse::<Ipv4Addr>().ok()?.into(),
            ),
            "AF_INET6" => (
                self.get("saddrv6")?.parse::<Ipv6Addr>().ok()?.into(),
                self.get("daddrv6")?.parse::<Ipv6Addr>().ok()?.into(),
            ),
            _ => return None,
        };
        Some((SocketAddr::new(s, sport), SocketAddr::new(d, dport)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SET_STATE: &str = "         python3-5557    [001] ..s2.  4686.115755: inet_sock_set_state: family=AF_INET protocol=IPPROTO_TCP sport=44952 dport=39681 saddr=127.0.0.1 daddr=127.0.0.1 saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.1 oldstate=TCP_FIN_WAIT2 newstate=TCP_CLOSE";

    #[test]
    fn parses_set_state_v4() {
        assert_eq!(
            parse_line(SET_STATE),
            Some(TraceEvent::SetState {
                ts_ns: 4_686_115_755_000,
                local: "127.0.0.1:44952".parse().unwrap(),
                remote: "127.0.0.1:39681".parse().unwrap(),
                old: 5,
                new: 7,
            })
        );
    }

    #[test]
    fn parses_set_state_v6_and_command_names_with_spaces() {
        let line = " my prog-[x]-12 [000] d..1. 10.000001: inet_sock_set_state: family=AF_INET6 protocol=IPPROTO_TCP sport=0 dport=80 saddr=0.0.0.0 daddr=0.0.0.0 saddrv6=::1 daddrv6=fe80::1 oldstate=TCP_CLOSE newstate=TCP_SYN_SENT";
        let Some(TraceEvent::SetState {
            ts_ns,
            local,
            remote,
            old,
            new,
        }) = parse_line(line)
        else {
            panic!("not parsed");
        };
        assert_eq!(ts_ns, 10_000_001_000);
        assert_eq!(local, "[::1]:0".parse().unwrap());
        assert_eq!(remote, "[fe80::1]:80".parse().unwrap());
        assert_eq!((old, new), (7, 2));
    }

    #[test]
    fn ignores_other_protocols() {
        assert_eq!(
            parse_line(&SET_STATE.replace("IPPROTO_TCP", "IPPROTO_SCTP")),
            None
        );
    }

    #[test]
    fn parses_resets_retransmits_and_loss() {
        let send = "  <idle>-0 [001] ..s1. 1.5: tcp_send_reset: skbaddr=00000000a1b2 skaddr=0000000000000000 src=127.0.0.1:1 dest=127.0.0.1:46834 state=UNKNOWN reason=NO_SOCKET";
        assert_eq!(
            parse_line(send),
            Some(TraceEvent::SendReset {
                ts_ns: 1_500_000_000,
                local: Some("127.0.0.1:1".parse().unwrap()),
                remote: Some("127.0.0.1:46834".parse().unwrap()),
                reason: "NO_SOCKET".into(),
            })
        );
        let recv = " x-1 [000] ..... 2.000002: tcp_receive_reset: family=AF_INET sport=46834 dport=1 saddr=127.0.0.1 daddr=127.0.0.1 saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.1 sock_cookie=1a";
        assert!(matches!(
            parse_line(recv),
            Some(TraceEvent::ReceiveReset {
                cookie: Some(0x1a),
                ..
            })
        ));
        let rtx = " x-1 [000] ..... 3.000000: tcp_retransmit_skb: skbaddr=0 skaddr=0 family=AF_INET sport=5 dport=6 saddr=10.0.0.1 daddr=10.0.0.2 saddrv6=:: daddrv6=:: state=TCP_SYN_SENT err=0";
        assert!(matches!(
            parse_line(rtx),
            Some(TraceEvent::Retransmit { .. })
        ));
        assert_eq!(
            parse_line("CPU:1 [LOST 42 EVENTS]"),
            Some(TraceEvent::Lost { count: 42 })
        );
    }

    #[test]
    fn malformed_lines_are_none() {
        for line in [
            "",
            "garbage",
            " a-1 [000] .. x: inet_sock_set_state: family=AF_INET",
            " a-1 [000] .. 1.1: inet_sock_set_state: protocol=IPPROTO_TCP family=AF_INET sport=99999",
            "CPU:1 [LOST x EVENTS]",
        ] {
            assert_eq!(parse_line(line), None, "{line:?}");
        }
        for cut in 0..SET_STATE.len() {
            if SET_STATE.is_char_boundary(cut) {
                let _ = parse_line(&SET_STATE[..cut]);
            }
        }
    }
}
