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

/// Sets IFF_UP on interface `name` of the calling thread's namespace (SIOCSIFFLAGS).
fn set_up(name: &str) -> io::Result<()> {
    // SAFETY: a plain socket() call; the result is checked and owned at once.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
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
