//! One error type for the library; the CLI wraps it with context.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Mismatched or invalid tensor shapes, zero-sized dimensions.
    #[error("shape error: {0}")]
    Shape(String),
    /// An op or model argument that is not a shape: a temperature, a dtype, an architecture.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A setting of a run (hyper-parameter, data fraction, seeds) outside its valid range.
    /// `key` is its name in the configuration (`lr`, `temperature`, `label_fraction`, …).
    #[error("invalid {key}: {reason}")]
    InvalidSetting { key: &'static str, reason: String },
    /// A run directory another process is writing to.
    #[error("{0}")]
    Busy(String),
    /// Stopped on request (Ctrl-C) at a safe point; what was finished is kept.
    #[error("interrupted: {0}")]
    Interrupted(String),
    /// A run directory that cannot be continued with the settings given.
    #[error("cannot resume: {0}")]
    Resume(String),
    /// No adapter, device lost, a validation error, a limit exceeded.
    #[error("device error: {0}")]
    Device(String),
    /// A buffer could not be allocated.
    #[error("out of memory on {device}: {detail}")]
    OutOfMemory { device: String, detail: String },
    /// Malformed or inconsistent dataset files.
    #[error("data error: {0}")]
    Data(String),
    /// Checkpoint names, shapes or dtypes that do not match, or an unreadable checkpoint.
    #[error("checkpoint error: {0}")]
    Checkpoint(String),
    /// Training diverged (NaN or infinite loss).
    #[error("training diverged: {0}")]
    Diverged(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`Error::InvalidSetting`].
    pub fn setting(key: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidSetting {
            key,
            reason: reason.into(),
        }
    }

    /// A device's refusal to allocate (a limit, out of memory), saying which buffer asked
    /// (`what`: "a tensor of shape [128, 64, 28, 28] (f32)"). Other errors pass through
    /// unchanged.
    pub(crate) fn allocating(self, what: &str) -> Self {
        match self {
            Error::Device(msg) => Error::Device(format!("{what}: {msg}")),
            Error::OutOfMemory { device, detail } => Error::OutOfMemory {
                device,
                detail: format!("{what}: {detail}"),
            },
            other => other,
        }
    }
}
