//! Exit codes (stable, documented in README.md) and the error type that carries one.
//!
//! Errors print as `tcplab: <what failed>: <why>`, plus how to fix it where the user
//! can act. A closed pipe (`tcplab capture | head`) is a clean exit, not an error.

use std::fmt;
use std::io;
use std::process::ExitCode;

/// Success.
pub const OK: u8 = 0;
/// Any failure without a more specific code.
pub const FAILURE: u8 = 1;
/// Bad command line (clap's own code).
pub const USAGE: u8 = 2;
/// The peer refused the connection: the kernel answered our SYN with RST.
pub const REFUSED: u8 = 3;
/// The connection was reset: the peer sent RST.
pub const RESET: u8 = 4;
/// Something did not happen within the time allowed.
pub const TIMEOUT: u8 = 5;
/// A privilege (capability) that the command needs is missing.
pub const PRIVILEGE: u8 = 6;

/// An error that knows which exit code it means.
#[derive(Debug)]
pub struct Failure {
    /// One of the constants of this module.
    pub code: u8,
    /// The complete message, without the `tcplab: ` prefix.
    pub message: String,
}

impl Failure {
    /// A failure with `code` and `message`.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// True when `err` (or anything in its chain) is a write to a closed pipe.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Turns a command's result into the process exit code, printing the error if any.
pub fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let code = err
                .chain()
                .find_map(|cause| cause.downcast_ref::<Failure>())
                .map_or(FAILURE, |f| f.code);
            eprintln!("tcplab: {err:#}");
            ExitCode::from(code)
        }
    }
}
