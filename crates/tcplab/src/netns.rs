//! Private network namespaces for experiments.
//!
//! A namespace here is anonymous: a thread calls `unshare(CLONE_NEWNET)`, keeps a file
//! descriptor of its new namespace, brings `lo` up, and returns to nothing else. No name
//! is registered under /run/netns, so nothing can be left behind: the kernel deletes the
//! namespace (with its sockets, TIME_WAIT ones included) when the last descriptor and the
//! last socket in it are closed — also when tcplab is killed.
//!
//! Sockets are created inside by a thread that entered the namespace with `setns()`;
//! a socket stays in the namespace it was created in, whichever thread uses it later.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A private network namespace, alive while this value (or a socket in it) is.
#[derive(Debug)]
pub struct Netns {
    fd: OwnedFd,
}

impl Netns {
    /// Creates a namespace with `lo` up. Needs CAP_SYS_ADMIN (unshare) and CAP_NET_ADMIN.
    pub fn new() -> io::Result<Netns> {
        std::thread::spawn(|| -> io::Result<Netns> {
            // SAFETY: unshare affects only this thread, which ends right after.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let fd: OwnedFd = File::open("/proc/thread-self/ns/net")?.into();
            set_up("lo")?;
            Ok(Netns { fd })
        })
        .join()
        .map_err(|_| io::Error::other("namespace thread panicked"))?
    }

    /// Moves the calling thread into the namespace. Only for threads that do nothing
    /// else afterwards (use [`Netns::run`] otherwise).
    pub fn enter(&self) -> io::Result<()> {
        // SAFETY: setns with a valid namespace descriptor changes only this thread.
        if unsafe { libc::setns(self.fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Runs `f` on a new thread inside the namespace and returns its result.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
        let fd = self.fd.try_clone()?;
        std::thread::spawn(move || -> io::Result<T> {
            Netns { fd }.enter()?;
            Ok(f())
        })
        .join()
        .map_err(|_| io::Error::other("thread in the namespace panicked"))?
    }

    /// Spawns a thread inside the namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<std::thread::JoinHandle<io::Result<T>>> {
        let fd = self.fd.try_clone()?;
        Ok(std::thread::spawn(move || -> io::Result<T> {
            Netns { fd }.enter()?;
            Ok(f())
        }))
    }
}

impl Netns {
    /// The namespace's inode number (what `/proc/PID/ns/net` links to as `net:[INODE]`),
    /// to tell namespaces apart and to check that none is left behind.
    pub fn inode(&self) -> io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        Ok(File::from(self.fd.try_clone()?).metadata()?.ino())
    }

    /// A path naming this namespace that other processes can open while tcplab lives
    /// (`/proc/PID/fd/N`): what `ip link ... netns PATH` takes, since an anonymous
    /// namespace has no name under /run/netns.
    pub fn proc_path(&self) -> String {
        format!("/proc/{}/fd/{}", std::process::id(), self.fd.as_raw_fd())
    }

    /// Reads sysctl `name` (e.g. `net.ipv4.tcp_fin_timeout`) as seen inside the
    /// namespace. Only `net.*` names: the others are not per namespace.
    pub fn sysctl(&self, name: &str) -> io::Result<String> {
        let path = sysctl_path(name)?;
        self.run(move || std::fs::read_to_string(&path).map(|v| v.trim_end().to_string()))?
    }

    /// Sets sysctl `name` to `value` inside the namespace, never on the host: the write
    /// happens on a thread that entered the namespace, and /proc/sys/net shows the
    /// writer's namespace. Only `net.*` names; a name that is global (registered for the
    /// host's namespace only, like `net.ipv4.tcp_max_orphans`) does not exist inside, so the
    /// write fails with NotFound instead of touching the host.
    pub fn set_sysctl(&self, name: &str, value: &str) -> io::Result<()> {
        let path = sysctl_path(name)?;
        let value = value.to_string();
        self.run(move || std::fs::write(&path, value))?
            .map_err(|e| io::Error::new(e.kind(), format!("sysctl {name}: {e}")))
    }

    /// Runs `ip ARGS` inside the namespace and fails with its stderr if it fails.
    /// The child inherits the network namespace of the thread that forks it, so it is
    /// started from a thread inside.
    pub fn ip(&self, args: &[&str]) -> io::Result<()> {
        let shown = args.join(" ");
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let output = self.run(move || {
            std::process::Command::new("ip")
                .args(&args)
                .output()
                .map_err(|e| io::Error::new(e.kind(), format!("running ip (iproute2): {e}")))
        })??;
        if output.status.success() {
            return Ok(());
        }
        Err(io::Error::other(format!(
            "ip {shown}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }

    /// Silences IPv6 autoconfiguration in the namespace (no router solicitations, no
    /// duplicate address detection, no link-local address on new devices), so the
    /// experiment's wire carries only the experiment. Call before creating devices:
    /// new devices copy `conf/default`.
    pub fn quiet_ipv6(&self) -> io::Result<()> {
        for conf in ["all", "default"] {
            for (key, value) in [
                ("accept_ra", "0"),
                ("autoconf", "0"),
                ("dad_transmits", "0"),
                ("router_solicitations", "0"),
                ("addr_gen_mode", "1"),
            ] {
                self.set_sysctl(&format!("net.ipv6.conf.{conf}.{key}"), value)?;
            }
        }
        Ok(())
    }
}

/// `net.ipv4.tcp_fin_timeout` → `/proc/sys/net/ipv4/tcp_fin_timeout`, refusing names
/// outside `net.` and anything that could climb out of /proc/sys/net.
fn sysctl_path(name: &str) -> io::Result<String> {
    let valid = name.starts_with("net.")
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    if !valid {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("sysctl '{name}': only net.* names are per namespace"),
        ));
    }
    Ok(format!("/proc/sys/{}", name.replace('.', "/")))
}

/// Sets IFF_UP on interface `name` of the calling thread's namespace (SIOCSIFFLAGS).
fn set_up(name: &str) -> io::Result<()> {
    // SAFETY: a plain socket() call; the result is checked and owned at once.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut req = ifreq(name)?;
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own; the union field
    // ifru_flags is the one these requests use.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// An all-zero `ifreq` carrying interface name `name` (for SIOC* and TUNSETIFF ioctls).
pub(crate) fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inode of a thread's network namespace, to tell namespaces apart.
    fn ns_inode() -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino()
    }

    #[test]
    fn a_private_namespace_has_its_own_loopback() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            if std::env::var("TCPLAB_SKIP_PRIVILEGED").as_deref() == Ok("1") {
                eprintln!("skipped: needs root");
                return;
            }
            panic!("needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN); or TCPLAB_SKIP_PRIVILEGED=1");
        }
        let ns = Netns::new().unwrap();
        let outside = ns_inode();
        // Loopback is up inside: a connection over it completes.
        let inside = ns
            .run(|| {
                let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                let client = std::net::TcpStream::connect(addr).unwrap();
                let (server, _) = listener.accept().unwrap();
                drop(server);
                drop(client);
                ns_inode()
            })
            .unwrap();
        assert_ne!(inside, outside);
    }
}
