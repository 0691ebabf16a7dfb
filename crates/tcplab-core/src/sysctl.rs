//! The kernel parameters that shape TCP's visible behaviour in the scenarios, each with
//! one line on what it does. Pure data: the `tcplab sysctl` command reads the values.
//!
//! Every name here is per network namespace on current kernels (a name that is not
//! does not even appear inside a new namespace), so a scenario can set it in its own
//! namespaces without touching the host.

use serde::Serialize;

/// Which part of a connection's life a parameter shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Topic {
    /// Opening: SYN, SYN,ACK, queues.
    Opening,
    /// Closing: FIN_WAIT2, TIME_WAIT.
    Closing,
    /// Keepalive probes on idle connections.
    Keepalive,
    /// Loss detection and retransmission.
    Retransmission,
    /// Options negotiated in the SYNs and buffer sizes.
    Options,
}

impl Topic {
    /// The heading `tcplab sysctl` prints for this topic.
    pub fn title(self) -> &'static str {
        match self {
            Topic::Opening => "opening",
            Topic::Closing => "closing",
            Topic::Keepalive => "keepalive",
            Topic::Retransmission => "retransmission",
            Topic::Options => "options and buffers",
        }
    }
}

/// One kernel parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Param {
    /// The sysctl name, e.g. `net.ipv4.tcp_fin_timeout`.
    pub name: &'static str,
    /// Which part of the connection's life it shapes.
    pub topic: Topic,
    /// One line on what it does.
    pub about: &'static str,
}

impl Param {
    /// Where the value lives: `/proc/sys/net/ipv4/tcp_fin_timeout`.
    pub fn proc_path(&self) -> String {
        format!("/proc/sys/{}", self.name.replace('.', "/"))
    }
}

const fn p(name: &'static str, topic: Topic, about: &'static str) -> Param {
    Param { name, topic, about }
}

/// The parameters, grouped by topic in the order a connection lives them.
#[rustfmt::skip]
pub const PARAMS: &[Param] = &[
    p("net.core.somaxconn", Topic::Opening,
      "upper limit of a listen() backlog: a larger backlog is silently cut to it"),
    p("net.ipv4.tcp_max_syn_backlog", Topic::Opening,
      "half-open (SYN_RECV) requests a listener keeps before dropping SYNs or using syncookies"),
    p("net.ipv4.tcp_syncookies", Topic::Opening,
      "answer SYNs with SYN cookies when the SYN queue overflows (1), always (2) or never (0)"),
    p("net.ipv4.tcp_abort_on_overflow", Topic::Opening,
      "accept queue full: reset the connection (1) instead of ignoring the third ACK so the client retries (0)"),
    p("net.ipv4.tcp_syn_retries", Topic::Opening,
      "SYN retransmissions before connect() fails with ETIMEDOUT"),
    p("net.ipv4.tcp_synack_retries", Topic::Opening,
      "SYN,ACK retransmissions for a half-open request before the listener forgets it"),
    p("net.ipv4.tcp_syn_linear_timeouts", Topic::Opening,
      "SYN and SYN,ACK retransmissions that wait a fixed 1 s before the timeout starts doubling"),
    p("net.ipv4.tcp_fastopen", Topic::Opening,
      "TCP Fast Open, data in the SYN: bit 1 client, bit 2 server"),
    p("net.ipv4.ip_local_port_range", Topic::Opening,
      "ephemeral ports that connect() picks from when the socket was not bound"),
    p("net.ipv4.tcp_fin_timeout", Topic::Closing,
      "seconds an orphaned connection waits in FIN_WAIT2 for the peer's FIN (not TIME_WAIT, fixed at 60 s)"),
    p("net.ipv4.tcp_tw_reuse", Topic::Closing,
      "a new outgoing connection may reuse a TIME_WAIT 4-tuple: 0 no, 1 yes, 2 loopback only"),
    p("net.ipv4.tcp_tw_reuse_delay", Topic::Closing,
      "milliseconds a TIME_WAIT socket must have existed before tcp_tw_reuse may take its 4-tuple"),
    p("net.ipv4.tcp_max_tw_buckets", Topic::Closing,
      "TIME_WAIT sockets allowed; beyond it a closing connection skips TIME_WAIT"),
    p("net.ipv4.tcp_rfc1337", Topic::Closing,
      "1: an RST received in TIME_WAIT is ignored instead of ending it early (RFC 1337)"),
    p("net.ipv4.tcp_orphan_retries", Topic::Closing,
      "retransmissions for a connection whose socket was already closed (0 means 8)"),
    p("net.ipv4.tcp_keepalive_time", Topic::Keepalive,
      "idle seconds before the first keepalive probe (SO_KEEPALIVE on; per socket TCP_KEEPIDLE)"),
    p("net.ipv4.tcp_keepalive_intvl", Topic::Keepalive,
      "seconds between unanswered keepalive probes (per socket TCP_KEEPINTVL)"),
    p("net.ipv4.tcp_keepalive_probes", Topic::Keepalive,
      "unanswered probes before the kernel sends RST and the application gets ETIMEDOUT (TCP_KEEPCNT)"),
    p("net.ipv4.tcp_retries1", Topic::Retransmission,
      "retransmissions after which TCP asks IP to recheck the route; the connection goes on"),
    p("net.ipv4.tcp_retries2", Topic::Retransmission,
      "retransmissions of data before an established connection is aborted with ETIMEDOUT (15: ~15 min)"),
    p("net.ipv4.tcp_rto_min_us", Topic::Retransmission,
      "lowest retransmission timeout in microseconds (200000: the 200 ms floor)"),
    p("net.ipv4.tcp_early_retrans", Topic::Retransmission,
      "tail loss probe: 3 or 4 sends a probe after about two RTTs instead of waiting for the RTO"),
    p("net.ipv4.tcp_recovery", Topic::Retransmission,
      "loss detection: bit 1 enables RACK, time-based, instead of counting three duplicate ACKs"),
    p("net.ipv4.tcp_sack", Topic::Retransmission,
      "selective acknowledgments (RFC 2018): the receiver names the blocks it has, only holes are resent"),
    p("net.ipv4.tcp_dsack", Topic::Retransmission,
      "duplicate SACK (RFC 2883): the receiver reports segments it got twice, undoing needless recovery"),
    p("net.ipv4.tcp_timestamps", Topic::Options,
      "RFC 7323 timestamps: RTT samples and PAWS; needed by tcp_tw_reuse"),
    p("net.ipv4.tcp_window_scaling", Topic::Options,
      "RFC 7323 window scaling: windows beyond 64 KiB, negotiated in the SYNs"),
    p("net.ipv4.tcp_ecn", Topic::Options,
      "explicit congestion notification: 0 off, 1 request it, 2 accept it when the peer asks"),
    p("net.ipv4.tcp_congestion_control", Topic::Options,
      "congestion control algorithm of new connections"),
    p("net.ipv4.tcp_slow_start_after_idle", Topic::Options,
      "1: a connection idle for an RTO starts again from a small congestion window"),
    p("net.ipv4.tcp_autocorking", Topic::Options,
      "hold small writes while earlier data waits in the device queue, to send them together"),
    p("net.ipv4.tcp_rmem", Topic::Options,
      "receive buffer bytes: min, default, max; autotuning grows the advertised window within them"),
    p("net.ipv4.tcp_wmem", Topic::Options,
      "send buffer bytes: min, default, max"),
];

/// The parameter called `name`, if it is one of [`PARAMS`].
pub fn find(name: &str) -> Option<&'static Param> {
    PARAMS.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_a_net_sysctl_listed_once_and_grouped() {
        let mut seen = std::collections::HashSet::new();
        for param in PARAMS {
            assert!(param.name.starts_with("net.ipv4.") || param.name.starts_with("net.core."));
            assert!(seen.insert(param.name), "{} twice", param.name);
            assert!(
                !param.about.is_empty() && param.about.len() <= 110,
                "{}",
                param.name
            );
        }
        // Grouped: once a topic ends, it does not come back.
        let mut topics: Vec<Topic> = PARAMS.iter().map(|p| p.topic).collect();
        topics.dedup();
        let unique: std::collections::HashSet<_> = topics.iter().collect();
        assert_eq!(unique.len(), topics.len());
    }

    #[test]
    fn the_issue_names_are_there() {
        for name in [
            "net.ipv4.tcp_fin_timeout",
            "net.core.somaxconn",
            "net.ipv4.tcp_syn_linear_timeouts",
            "net.ipv4.tcp_retries2",
        ] {
            assert!(find(name).is_some(), "{name}");
        }
        assert_eq!(
            find("net.ipv4.tcp_fin_timeout").unwrap().proc_path(),
            "/proc/sys/net/ipv4/tcp_fin_timeout"
        );
    }
}
