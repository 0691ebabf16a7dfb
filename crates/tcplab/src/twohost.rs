//! Two-host mode: a client host and a server host, each its own network namespace,
//! joined by a veth pair or by the impairable wire (see [`crate::tunwire`]).
//!
//! | host   | IPv4        | IPv6          | device    |
//! |--------|-------------|---------------|-----------|
//! | client | 192.0.2.1   | 2001:db8::1   | `tcplab-c`|
//! | server | 192.0.2.2   | 2001:db8::2   | `tcplab-s`|
//!
//! Both ranges are the documentation ones (RFC 5737, RFC 3849): traffic stays between
//! the two namespaces and never reaches a real network.
//!
//! # Nothing can be left behind
//!
//! Issue 7 asks that a stale set from a killed run be removed at the next start. None
//! can exist: both namespaces are anonymous (`unshare`, no name under /run/netns, see
//! [`crate::netns`]), the veth pair and the TUN devices are created inside them and never
//! appear in the host's namespace, and a TUN device lives only as long as its file
//! descriptor. When tcplab exits or is killed (SIGKILL included), the kernel closes its
//! descriptors, the namespaces lose their last reference, and the kernel deletes them
//! with their devices and sockets (TIME_WAIT ones included). There is nothing under
//! /run/netns or in the host's `ip link` to clean at the next start; the integration test
//! `twohost::a_killed_holder_leaves_nothing_behind` kills a process holding a set with
//! SIGKILL and checks exactly that.
//!
//! Sysctls such as `net.ipv4.tcp_fin_timeout` are per namespace: set them with
//! [`Netns::set_sysctl`] on [`TwoHost::client`] or [`TwoHost::server`] (or both with
//! [`TwoHost::set_sysctl`]); the host's values are never written.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::Context as _;
use tcplab_core::impair::{Rules, WireEvent};

use crate::netns::Netns;
use crate::tunwire::{self, Tun, WireRun};

/// The client host's IPv4 address.
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The server host's IPv4 address.
pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// The client host's IPv6 address.
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// The server host's IPv6 address.
pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
/// The client host's device name (in its own namespace).
pub const CLIENT_DEV: &str = "tcplab-c";
/// The server host's device name (in its own namespace).
pub const SERVER_DEV: &str = "tcplab-s";

/// How the two hosts are joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// A veth pair: a perfect wire inside the kernel; capture sees each packet once.
    Veth,
    /// Two TUN devices and tcplab's forwarder between them, applying these rules.
    Wire(Rules),
}

/// Two hosts, alive while this value is. Dropping it stops the wire and deletes both
/// namespaces (once the last socket created in them is closed too).
#[derive(Debug)]
pub struct TwoHost {
    // Declared first so it is dropped first: the forwarder stops before the namespaces go.
    wire: Option<WireRun>,
    /// The client host (192.0.2.1, 2001:db8::1). Create its sockets with
    /// [`Netns::run`] or [`Netns::spawn`].
    pub client: Netns,
    /// The server host (192.0.2.2, 2001:db8::2).
    pub server: Netns,
}

impl TwoHost {
    /// Builds the two hosts joined by `link`. Needs CAP_SYS_ADMIN and CAP_NET_ADMIN.
    /// Without the privileges, the error carries [`crate::exit::PRIVILEGE`] and says how
    /// to get them.
    pub fn new(link: Link) -> anyhow::Result<TwoHost> {
        let client = Netns::new().map_err(privilege)?;
        let server = Netns::new().map_err(privilege)?;
        for ns in [&client, &server] {
            ns.quiet_ipv6()
                .context("turning off IPv6 autoconfiguration in a host's namespace")?;
        }
        let wire = match link {
            Link::Veth => {
                veth(&client, &server).context("joining the two hosts with a veth pair")?;
                None
            }
            Link::Wire(rules) => {
                let c = Tun::create_in(&client, CLIENT_DEV)
                    .context("creating the client host's TUN device")?;
                let s = Tun::create_in(&server, SERVER_DEV)
                    .context("creating the server host's TUN device")?;
                point_to_point(
                    &client,
                    CLIENT_DEV,
                    (CLIENT_V4, SERVER_V4),
                    (CLIENT_V6, SERVER_V6),
                )
                .context("configuring the client host's TUN device")?;
                point_to_point(
                    &server,
                    SERVER_DEV,
                    (SERVER_V4, CLIENT_V4),
                    (SERVER_V6, CLIENT_V6),
                )
                .context("configuring the server host's TUN device")?;
                Some(tunwire::start(c, s, rules).context("starting the wire")?)
            }
        };
        Ok(TwoHost {
            wire,
            client,
            server,
        })
    }

    /// Sets a `net.*` sysctl to `value` in both hosts (never on the host machine).
    pub fn set_sysctl(&self, name: &str, value: &str) -> io::Result<()> {
        self.client.set_sysctl(name, value)?;
        self.server.set_sysctl(name, value)
    }

    /// The wire's decisions so far, while it runs (empty for a veth link).
    pub fn wire_events_so_far(&self) -> Vec<WireEvent> {
        self.wire
            .as_ref()
            .map(WireRun::events_so_far)
            .unwrap_or_default()
    }

    /// Stops the wire and returns its decisions, in order: empty for a veth link, or if
    /// already called. The hosts stay up (without a wire, nothing passes between them).
    pub fn stop_wire(&mut self) -> io::Result<Vec<WireEvent>> {
        match self.wire.take() {
            Some(w) => w.stop(),
            None => Ok(Vec::new()),
        }
    }
}

/// The error of a namespace that could not be created: a missing privilege gets its
/// exit code and the way to fix it.
fn privilege(e: io::Error) -> anyhow::Error {
    if e.kind() == io::ErrorKind::PermissionDenied {
        return crate::exit::Failure::new(
            crate::exit::PRIVILEGE,
            format!(
                "creating the two hosts' network namespaces: {e}: needs CAP_SYS_ADMIN and \
                 CAP_NET_ADMIN; how to fix: 1. run as root (sudo), or 2. sudo setcap \
                 cap_sys_admin,cap_net_admin,cap_net_raw+ep /path/to/tcplab"
            ),
        )
        .into();
    }
    anyhow::Error::new(e).context("creating a host's network namespace")
}

/// Creates the pair inside the client host with its peer born in the server host, then
/// addresses and brings up both ends.
fn veth(client: &Netns, server: &Netns) -> io::Result<()> {
    // `netns PATH`: iproute2 opens a value containing '/' as a namespace file, which
    // names an anonymous namespace through our own descriptor.
    let server_path = server.proc_path();
    client.ip(&[
        "link",
        "add",
        CLIENT_DEV,
        "type",
        "veth",
        "peer",
        "name",
        SERVER_DEV,
        "netns",
        &server_path,
    ])?;
    for (ns, dev, v4, v6) in [
        (client, CLIENT_DEV, CLIENT_V4, CLIENT_V6),
        (server, SERVER_DEV, SERVER_V4, SERVER_V6),
    ] {
        ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", dev])?;
        ns.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{v6}/64"),
            "dev",
            dev,
            "nodad",
        ])?;
        ns.ip(&["link", "set", dev, "up"])?;
    }
    Ok(())
}

/// Gives a TUN device its point-to-point addresses and brings it up.
fn point_to_point(
    ns: &Netns,
    dev: &str,
    (local4, peer4): (Ipv4Addr, Ipv4Addr),
    (local6, peer6): (Ipv6Addr, Ipv6Addr),
) -> io::Result<()> {
    ns.ip(&[
        "addr",
        "add",
        &local4.to_string(),
        "peer",
        &peer4.to_string(),
        "dev",
        dev,
    ])?;
    // An IPv6 `peer` address gets no route to the peer on this kernel (measured): add
    // the route explicitly. The device is NOARP, so no neighbour discovery is needed.
    ns.ip(&[
        "-6",
        "addr",
        "add",
        &local6.to_string(),
        "dev",
        dev,
        "nodad",
    ])?;
    ns.ip(&["link", "set", dev, "up"])?;
    ns.ip(&["-6", "route", "add", &format!("{peer6}/128"), "dev", dev])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_namespace_is_a_privilege_failure_with_a_fix() {
        let err = privilege(io::Error::from(io::ErrorKind::PermissionDenied));
        let failure = err.downcast_ref::<crate::exit::Failure>().unwrap();
        assert_eq!(failure.code, crate::exit::PRIVILEGE);
        assert!(failure.message.contains("CAP_SYS_ADMIN"));
        assert!(failure.message.contains("how to fix"));
        let other = privilege(io::Error::from(io::ErrorKind::NotFound));
        assert!(other.downcast_ref::<crate::exit::Failure>().is_none());
    }
}
