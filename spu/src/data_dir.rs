//! A node's data directory and the identity file that ties it to one cluster
//! and one node id.
//!
//! ```text
//! node.toml          cluster id + node id, written at first start
//! tls/               node.pem, node.key, ca.pem
//! raft/              RocksDB: Raft logs and votes of every group
//! controller.bin     the controller's metadata at its last synced point
//! partitions/<topic>-<topic id>-<partition>/   segment files
//! repair/<topic>-<topic id>-<partition>/       a damaged replica's copy, being assembled
//! quarantine/<topic>-<topic id>-<partition>.<unix seconds>/   damaged segments, for diagnosis
//! ```
//!
//! `repair/` and `quarantine/` sit outside `partitions/` so that nothing that
//! walks the partitions (tools, the fault suite's corruption) mistakes them
//! for live replicas; they are on the same file system as `partitions/`, so
//! moving a directory between them is a rename.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Identity {
    cluster_id: String,
    node_id: u64,
    /// Random, made when the directory is first claimed: tells the cluster
    /// this copy of the node's data from any other (a wiped and re-created
    /// directory gets a new one, and the controller refuses it).
    #[serde(default)]
    incarnation: Option<String>,
}

/// 128 random bits as hex (the same generator as request ids).
fn new_incarnation() -> String {
    let [a, b] = sluice_proto::new_request_id();
    format!("{a:016x}{b:016x}")
}

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error(
        "data dir {path} belongs to cluster {found:?}, not {expected:?}; use another --data-dir or remove it"
    )]
    OtherCluster {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error(
        "data dir {path} belongs to node {found} of this cluster, not node {expected}; a node id is tied to its data"
    )]
    OtherNode {
        path: PathBuf,
        found: u64,
        expected: u64,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("identity file {path} is unreadable: {reason}; it was not written by Sluice")]
    BadIdentity { path: PathBuf, reason: String },
}

/// A data directory checked to belong to this node of this cluster.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
    incarnation: String,
    fresh: bool,
}

impl DataDir {
    /// Creates the directory if needed, then checks (or, at first start,
    /// records) which cluster and node it belongs to.
    pub fn claim(root: &Path, cluster_id: &str, node_id: u64) -> Result<Self, DataDirError> {
        let io = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| DataDirError::Io {
                action,
                path,
                source,
            }
        };
        std::fs::create_dir_all(root).map_err(io("create", root))?;
        owner_only(root).map_err(io("restrict to its owner", root))?;
        let id_path = root.join("node.toml");
        let write = |id: &Identity| {
            let text = toml::to_string(id).expect("identity serializes");
            std::fs::write(&id_path, text).map_err(io("write", &id_path))
        };
        let (incarnation, fresh) = match std::fs::read_to_string(&id_path) {
            Ok(text) => {
                let mut found: Identity =
                    toml::from_str(&text).map_err(|e| DataDirError::BadIdentity {
                        path: id_path.clone(),
                        reason: e.to_string(),
                    })?;
                if found.cluster_id != cluster_id {
                    return Err(DataDirError::OtherCluster {
                        path: root.to_path_buf(),
                        found: found.cluster_id,
                        expected: cluster_id.to_string(),
                    });
                }
                if found.node_id != node_id {
                    return Err(DataDirError::OtherNode {
                        path: root.to_path_buf(),
                        found: found.node_id,
                        expected: node_id,
                    });
                }
                match found.incarnation.clone() {
                    Some(i) => (i, false),
                    None => {
                        // Written before incarnations existed: give it one now.
                        let i = new_incarnation();
                        found.incarnation = Some(i.clone());
                        write(&found)?;
                        (i, false)
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = Identity {
                    cluster_id: cluster_id.to_string(),
                    node_id,
                    incarnation: Some(new_incarnation()),
                };
                write(&id)?;
                (id.incarnation.expect("just set"), true)
            }
            Err(e) => {
                return Err(DataDirError::Io {
                    action: "read",
                    path: id_path,
                    source: e,
                });
            }
        };
        Ok(Self {
            root: root.to_path_buf(),
            incarnation,
            fresh,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    /// This copy of the node's data, as the controller knows it.
    pub fn incarnation(&self) -> &str {
        &self.incarnation
    }
    /// Claimed for the first time by this start (no identity file existed).
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }
    pub fn tls(&self) -> PathBuf {
        self.root.join("tls")
    }
    pub fn raft(&self) -> PathBuf {
        self.root.join("raft")
    }
    pub fn controller_state(&self) -> PathBuf {
        self.root.join("controller.bin")
    }
    pub fn partition(&self, topic: &str, topic_id: u32, partition: u32) -> PathBuf {
        self.root
            .join("partitions")
            .join(Self::partition_dir_name(topic, topic_id, partition))
    }
    /// Where a repair assembles a new copy of a damaged replica's segments
    /// before it replaces [`Self::partition`] (`crate::repair`).
    pub(crate) fn partition_repair(&self, topic: &str, topic_id: u32, partition: u32) -> PathBuf {
        self.root
            .join("repair")
            .join(Self::partition_dir_name(topic, topic_id, partition))
    }
    /// Where damaged partition directories are kept for diagnosis.
    pub(crate) fn quarantine(&self) -> PathBuf {
        self.root.join("quarantine")
    }
    fn partition_dir_name(topic: &str, topic_id: u32, partition: u32) -> String {
        format!("{topic}-{topic_id}-{partition}")
    }
}

/// Makes `dir` reachable by its owner only (0700): it holds the node's TLS
/// key, its Raft state and every record, which other local users must not
/// read (the files inside were created 0644 under a 0755 directory).
fn owner_only(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_is_its_owners_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("node");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        DataDir::claim(&root, "c1", 1).unwrap();
        let mode = std::fs::metadata(&root).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "mode {mode:o}");
    }

    #[test]
    fn a_data_dir_stays_with_its_cluster_and_node() {
        let dir = tempfile::tempdir().unwrap();
        DataDir::claim(dir.path(), "c1", 1).unwrap();
        DataDir::claim(dir.path(), "c1", 1).unwrap();
        let err = DataDir::claim(dir.path(), "c2", 1).unwrap_err();
        assert!(
            err.to_string().contains("belongs to cluster \"c1\""),
            "{err}"
        );
        assert!(matches!(
            DataDir::claim(dir.path(), "c1", 2),
            Err(DataDirError::OtherNode { .. })
        ));
    }
}
