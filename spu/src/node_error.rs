//! Why a node could not start (or had to stop while starting).

use std::path::PathBuf;

use sluice_controller::ControllerError;
use sluice_raft::RaftError;
use sluice_transport::{TlsError, TransportError};

use crate::data_dir::DataDirError;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error(
        "cannot load the node's TLS material from {dir}: {source}; `sluice cluster start --local` creates it"
    )]
    Tls { dir: PathBuf, source: TlsError },
    #[error("cannot configure TLS: {0}")]
    TlsConfig(TlsError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Raft(#[from] RaftError),
    #[error(transparent)]
    Controller(#[from] ControllerError),
    #[error("{reason}")]
    Refused { reason: String },
    #[error("cannot open the fsync journal in {dir}: {source}")]
    FsyncJournal {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot create the crash-point file named by {} in {dir}: {source}; \
         unset it, or name a file the node may write",
        sluice_crashpoints::FILE_ENV
    )]
    CrashFile {
        dir: PathBuf,
        source: std::io::Error,
    },
}
