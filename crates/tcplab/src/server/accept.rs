//! The async accept loops: they take clients only while the blocking lanes cannot (see
//! `lane`), registering the listening socket with their reactor only then.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tcplab_core::protocol;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::{balance, Shared, Stopped};

/// An accept loop's registration of the listening socket, while it takes clients.
///
/// The listening socket is blocking while no loop is armed, so that lane threads wait
/// in accept(2) itself (one syscall per client, like the classic server); tokio needs
/// it non-blocking. The flag belongs to the open file description that every duplicate
/// shares, hence the count of armed loops, under a lock, that sets and clears it.
struct Armed<'a> {
    listener: Option<TcpListener>,
    source: &'a std::net::TcpListener,
    shared: &'a Shared,
}

impl<'a> Armed<'a> {
    fn arm(source: &'a std::net::TcpListener, shared: &'a Shared) -> io::Result<Armed<'a>> {
        {
            let mut users = lock(&shared.nonblocking_users);
            if *users == 0 {
                source.set_nonblocking(true)?;
            }
            *users += 1;
        }
        shared.armed.fetch_add(1, Ordering::AcqRel);
        // From here on, dropping `armed` undoes the above, also on the error below.
        let mut armed = Armed {
            listener: None,
            source,
            shared,
        };
        armed.listener = Some(source.try_clone().and_then(TcpListener::from_std)?);
        Ok(armed)
    }

    async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        match &self.listener {
            Some(listener) => listener.accept().await,
            None => std::future::pending().await,
        }
    }
}

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        // Deregistered first: tokio must never see the socket blocking.
        drop(self.listener.take());
        self.shared.armed.fetch_sub(1, Ordering::AcqRel);
        let mut users = lock(&self.shared.nonblocking_users);
        *users -= 1;
        if *users == 0 {
            let _ = self.source.set_nonblocking(false);
            self.shared.disarmed.notify_all();
        }
    }
}

pub(super) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An armed accept loop that took no client for this long disarms: the lanes, idle
/// while it is armed, take the next clients.
const LANE_CHECK: Duration = Duration::from_millis(100);

/// Accepts clients from a lane's call for help for as long as every lane thread stays
/// busy, until `halt` completes, and returns its value. Clients are served by tasks in `tasks` on this thread.
///
/// The listening socket is registered with this thread's reactor only while armed: a
/// registered listener would wake this thread for every new client, also those that a
/// lane thread takes.
pub(super) async fn accept_loop(
    listener: &std::net::TcpListener,
    shared: &Arc<Shared>,
    tasks: &mut JoinSet<()>,
    halt: impl Future<Output = Stopped>,
) -> Stopped {
    let mut halt = pin!(halt);
    let mut help = shared.lane_full.subscribe();
    loop {
        tokio::select! {
            biased;
            stopped = &mut halt => return stopped,
            _ = help.changed() => {}
        }
        let armed = match Armed::arm(listener, shared) {
            Ok(armed) => armed,
            Err(err) => {
                shared
                    .config
                    .log
                    .server(format_args!("accept failed: {err}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // (Not `interval`: its first tick is immediate.)
        let mut check =
            tokio::time::interval_at(tokio::time::Instant::now() + LANE_CHECK, LANE_CHECK);
        let mut took_any = false;
        loop {
            let (stream, peer) = tokio::select! {
                biased;
                stopped = &mut halt => return stopped,
                accepted = armed.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        // EMFILE, ECONNABORTED and the like concern one connection or a
                        // moment; the server goes on.
                        shared.config.log.server(format_args!("accept failed: {err}"));
                        if is_fd_exhaustion(&err) {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        continue;
                    }
                },
                _ = check.tick() => {
                    if !std::mem::replace(&mut took_any, false) {
                        break;
                    }
                    continue;
                }
            };
            took_any = true;
            while tasks.try_join_next().is_some() {}
            if shared.open.load(Ordering::Relaxed) >= shared.config.max_conns {
                shared
                    .config
                    .log
                    .conn(peer, format_args!("refused: server busy"));
                tasks.spawn(send_busy(stream));
                continue;
            }
            shared.open.fetch_add(1, Ordering::Relaxed);
            balance::place(shared, tasks, stream, peer);
        }
    }
}

fn is_fd_exhaustion(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Tells a client over the limit that the server is busy, then closes with FIN.
async fn send_busy(mut stream: TcpStream) {
    let _ = stream.write_all(protocol::BUSY_NOTICE).await;
    let _ = stream.shutdown().await;
}
