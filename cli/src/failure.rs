//! How a failed command ends: a message on stderr and an exit code.

use std::process::ExitCode;

/// Operation refused or invalid (also: bad signature).
pub const EXIT_REFUSED: u8 = 1;
/// Usage error.
pub const EXIT_USAGE: u8 = 2;
/// A tier is unavailable or not ready.
pub const EXIT_UNAVAILABLE: u8 = 3;

/// A command's failure.
#[derive(Debug)]
pub struct Failure {
    /// Exit code.
    pub code: u8,
    /// The line for stderr.
    pub message: String,
}

impl Failure {
    /// A usage error.
    pub fn usage(message: impl std::fmt::Display) -> Self {
        Self { code: EXIT_USAGE, message: message.to_string() }
    }

    /// Refused or invalid.
    pub fn refused(message: impl std::fmt::Display) -> Self {
        Self { code: EXIT_REFUSED, message: message.to_string() }
    }

    /// Unavailable.
    pub fn unavailable(message: impl std::fmt::Display) -> Self {
        Self { code: EXIT_UNAVAILABLE, message: message.to_string() }
    }

    /// Prints and returns the exit code.
    pub fn report(self) -> ExitCode {
        eprintln!("skm: {}", self.message);
        ExitCode::from(self.code)
    }
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Self {
        let code = match s.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => EXIT_UNAVAILABLE,
            _ => EXIT_REFUSED,
        };
        Self { code, message: format!("{}: {}", skm_client::code_name(s.code()), s.message()) }
    }
}

impl From<skm_client::ClientError> for Failure {
    fn from(e: skm_client::ClientError) -> Self {
        use skm_client::ClientError as E;
        match e {
            E::Rpc(status) => status.into(),
            e @ (E::Io(_) | E::Envelope(_) | E::Decrypt | E::Encrypt) => Self::refused(e),
            e => Self::usage(e),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::refused(format!("{e:#}"))
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Self::refused(e)
    }
}
