//! The first design most people write with tokio: a multi-thread runtime, one task per
//! connection, buffered line reads (`read_until(b'\n')`), one write per reply.

use std::io::{self, Write};

use baselines::{answer, listen_addr, Action, BANNER};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> io::Result<()> {
    let listener = TcpListener::bind(listen_addr()).await?;
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            if let Ok(Action::Shutdown) = serve(stream).await {
                std::process::exit(0);
            }
        });
    }
}

/// Serves one client until it quits, asks for shutdown, closes or fails.
async fn serve(stream: TcpStream) -> io::Result<Action> {
    let mut stream = BufReader::new(stream);
    stream.get_mut().write_all(BANNER).await?;
    let mut line = Vec::new();
    let mut out = Vec::new();
    loop {
        line.clear();
        if stream.read_until(b'\n', &mut line).await? == 0 {
            return Ok(Action::Quit);
        }
        // `\r\n` and a lone `\r` end lines too.
        for part in line.split(|&b| b == b'\r' || b == b'\n') {
            match answer(part, &mut out) {
                Action::Reply => {
                    stream.get_mut().write_all(&out).await?;
                    out.clear();
                }
                Action::Ignore => {}
                done => return Ok(done),
            }
        }
    }
}
