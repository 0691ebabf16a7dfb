//! Many connections per thread: one current-thread tokio runtime per OS thread, so a
//! connection's wakeups never cross threads. Used when there are more connections than
//! threads are worth.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::work::{check_banner, check_reply, wrong_reply, Op, Plan, Progress, Tally};

/// Runs `conns` connections on this thread until the plan ends.
pub fn worker(plan: Arc<Plan>, progress: Arc<Progress>, conns: usize) -> Tally {
    let tally = Rc::new(RefCell::new(Tally::new()));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            let mut tally = Tally::new();
            tally.error(super::work::ErrorKind::of(&err));
            return tally;
        }
    };
    let local = tokio::task::LocalSet::new();
    for _ in 0..conns {
        let (plan, progress, tally) = (plan.clone(), progress.clone(), tally.clone());
        local.spawn_local(async move { connection(&plan, &progress, &tally).await });
    }
    runtime.block_on(local);
    Rc::try_unwrap(tally)
        .map(RefCell::into_inner)
        .unwrap_or_else(|shared| {
            let mut tally = Tally::new();
            tally.merge(&shared.borrow());
            tally
        })
}

/// One connection slot: (re)connects and repeats its operation until the plan ends.
async fn connection(plan: &Plan, progress: &Progress, tally: &RefCell<Tally>) {
    let mut buf = vec![0u8; plan.expected.len().max(4096) + 1];
    loop {
        let t0 = Instant::now();
        if !plan.may_begin(t0) {
            return;
        }
        let open = tokio::time::timeout(plan.open_timeout(t0), open(plan, &mut buf));
        let stream = match open
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
        {
            Ok(stream) => stream,
            Err(_) if plan.abandoned() => return,
            Err(err) => {
                finish(plan, progress, tally, t0, Err(err)).await;
                continue;
            }
        };
        if plan.op == Op::Cycle {
            let outcome = timed(plan, quit(stream, &mut buf)).await;
            finish(plan, progress, tally, t0, outcome).await;
            continue;
        }
        let mut stream = stream;
        let mut t0 = Instant::now();
        while plan.may_start(t0) {
            let outcome = timed(plan, round_trip(&mut stream, plan, &mut buf)).await;
            let ok = outcome.is_ok();
            finish(plan, progress, tally, t0, outcome).await;
            if !ok {
                break;
            }
            t0 = Instant::now();
        }
    }
}

async fn finish(
    plan: &Plan,
    progress: &Progress,
    tally: &RefCell<Tally>,
    t0: Instant,
    outcome: io::Result<()>,
) {
    let refused = matches!(&outcome, Err(e) if e.kind() == io::ErrorKind::ConnectionRefused);
    let counter = if outcome.is_ok() {
        &progress.ops
    } else {
        &progress.errors
    };
    counter.fetch_add(1, Ordering::Relaxed);
    plan.record(&mut tally.borrow_mut(), t0, outcome);
    if refused {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Applies `--timeout` to one step.
async fn timed<T>(plan: &Plan, step: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(plan.timeout, step)
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

async fn open(plan: &Plan, buf: &mut [u8]) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect(plan.addr).await?;
    stream.set_nodelay(true)?;
    let mut len = 0;
    loop {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        len += n;
        if check_banner(&buf[..len])? {
            return Ok(stream);
        }
    }
}

async fn quit(mut stream: TcpStream, buf: &mut [u8]) -> io::Result<()> {
    stream.write_all(b"quit\n").await?;
    match stream.read(buf).await? {
        0 => Ok(()),
        _ => Err(wrong_reply()),
    }
}

async fn round_trip(stream: &mut TcpStream, plan: &Plan, buf: &mut [u8]) -> io::Result<()> {
    stream.write_all(&plan.message).await?;
    let mut len = 0;
    loop {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        len += n;
        if check_reply(&buf[..len], &plan.expected)? {
            return Ok(());
        }
    }
}
