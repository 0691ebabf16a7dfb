//! The classic design: accept one client, serve it with blocking reads of up to 2048
//! bytes until it quits, then accept the next. Unlike the PHP example it frames lines
//! correctly (`\n`, `\r\n` or `\r`) and survives resets and EOF.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};

use baselines::{answer, listen_addr, Action, BANNER};

fn main() -> io::Result<()> {
    let listener = TcpListener::bind(listen_addr())?;
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        // A client's failure (reset, broken pipe) ends that client only.
        if let Ok(Action::Shutdown) = serve(stream) {
            return Ok(());
        }
    }
    Ok(())
}

/// Serves one client until it quits, asks for shutdown, closes or fails.
fn serve(mut stream: TcpStream) -> io::Result<Action> {
    stream.write_all(BANNER)?;
    let mut buf = [0u8; 2048];
    let mut partial = Vec::new();
    let mut out = Vec::new();
    let mut after_cr = false;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(Action::Quit);
        }
        for &b in &buf[..n] {
            let was_cr = std::mem::replace(&mut after_cr, b == b'\r');
            if b == b'\n' && was_cr {
                continue;
            }
            if b != b'\n' && b != b'\r' {
                partial.push(b);
                continue;
            }
            match answer(&partial, &mut out) {
                Action::Quit => {
                    stream.write_all(&out)?;
                    return Ok(Action::Quit);
                }
                Action::Shutdown => {
                    stream.write_all(&out)?;
                    return Ok(Action::Shutdown);
                }
                Action::Ignore | Action::Reply => {}
            }
            partial.clear();
        }
        if !out.is_empty() {
            stream.write_all(&out)?;
            out.clear();
        }
    }
}
