//! Connection profiles in `$SLUICE_HOME/config.toml`.
//!
//! A profile says where a cluster answers and which CA signs its nodes'
//! certificates, so commands need no flags once `sluice cluster start --local`
//! (or a user) has written one. The file looks like:
//!
//! ```toml
//! current_profile = "local"
//!
//! [profiles.local]
//! endpoint = "127.0.0.1:9003"
//! ca_cert = "local/tls/ca.pem"        # relative paths are relative to SLUICE_HOME
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{ClientError, Result};

/// Name of the configuration file inside the Sluice home directory.
pub const CONFIG_FILE: &str = "config.toml";

/// The Sluice home directory: `$SLUICE_HOME` when set and non-empty, else
/// `~/.sluice` (`./.sluice` when no home directory is known).
pub fn sluice_home() -> PathBuf {
    if let Some(home) = std::env::var_os("SLUICE_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home);
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".sluice"),
        None => PathBuf::from(".sluice"),
    }
}

/// All connection profiles, and which one commands use by default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientConfig {
    pub current_profile: Option<String>,
    pub profiles: BTreeMap<String, Profile>,
}

/// How to reach one cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// `host:port` of any node of the cluster.
    pub endpoint: String,
    /// PEM file of the cluster CA; relative paths are relative to the home directory.
    pub ca_cert: PathBuf,
    /// Client certificate (PEM) for clusters that require mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,
    /// Private key (PEM) of `client_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
}

impl ClientConfig {
    /// Path of the configuration file in `home`.
    pub fn path(home: &Path) -> PathBuf {
        home.join(CONFIG_FILE)
    }

    /// Reads `home/config.toml`; a missing file is an empty configuration.
    pub fn load(home: &Path) -> Result<Self> {
        let path = Self::path(home);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => {
                return Err(ClientError::File {
                    what: "cannot read the connection profiles in",
                    path,
                    reason: e.to_string(),
                });
            }
        };
        toml::from_str(&text).map_err(|e| ClientError::File {
            what: "the connection profiles are malformed in",
            path,
            reason: format!("{e}; fix or delete the file"),
        })
    }

    /// Writes `home/config.toml` atomically (temporary file, then rename), so a
    /// crash never leaves a half-written file behind.
    pub fn save(&self, home: &Path) -> Result<()> {
        let path = Self::path(home);
        let fail = |what: &'static str, path: &Path, e: std::io::Error| ClientError::File {
            what,
            path: path.to_path_buf(),
            reason: format!("{e}; check that the directory is writable"),
        };
        std::fs::create_dir_all(home).map_err(|e| fail("cannot create the directory", home, e))?;
        let text = toml::to_string_pretty(self).map_err(|e| ClientError::File {
            what: "cannot encode the connection profiles for",
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let tmp = home.join(format!(".{CONFIG_FILE}.tmp-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            fail("cannot write the connection profiles to", &path, e)
        })
    }

    /// Adds or replaces profile `name`.
    pub fn set_profile(&mut self, name: impl Into<String>, profile: Profile) {
        self.profiles.insert(name.into(), profile);
    }

    /// Removes profile `name` (and makes no profile current if it was).
    pub fn remove_profile(&mut self, name: &str) -> Option<Profile> {
        if self.current_profile.as_deref() == Some(name) {
            self.current_profile = None;
        }
        self.profiles.remove(name)
    }

    /// Makes `name` the profile used when none is given.
    pub fn set_current(&mut self, name: impl Into<String>) {
        self.current_profile = Some(name.into());
    }

    /// The profile called `name`, or the current one when `name` is `None`
    /// (or the only one, when no current profile is set).
    pub fn profile(&self, name: Option<&str>) -> Option<(&str, &Profile)> {
        let name = match name {
            Some(name) => name,
            None => match self.current_profile.as_deref() {
                Some(current) => current,
                None if self.profiles.len() == 1 => self.profiles.keys().next()?.as_str(),
                None => return None,
            },
        };
        self.profiles
            .get_key_value(name)
            .map(|(k, v)| (k.as_str(), v))
    }
}

impl Profile {
    /// `path` made absolute against `home` when it is relative.
    pub fn resolve(home: &Path, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            home.join(path)
        }
    }
}

/// A profile with its certificates inline, as one file: `sluice profile
/// export` writes it (TOML, or JSON with `-O json`), and the environment
/// variable [`PROFILE_PATH_ENV`] (or Fluvio's [`FLUVIO_PROFILE_PATH_ENV`])
/// points a client at one, so a profile moves to another machine or a CI
/// job without the home directory it came from.
///
/// ```toml
/// endpoint = "127.0.0.1:9003"
///
/// [tls]
/// ca_cert = "-----BEGIN CERTIFICATE-----\n..."
/// client_cert = "-----BEGIN CERTIFICATE-----\n..."   # with client_key, or neither
/// client_key = "-----BEGIN PRIVATE KEY-----\n..."
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedProfile {
    /// `host:port` of any node of the cluster.
    pub endpoint: String,
    pub tls: ExportedTls,
}

/// The certificates of an [`ExportedProfile`], PEM text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedTls {
    /// The cluster CA.
    pub ca_cert: String,
    /// The client certificate, for clusters that require mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<String>,
    /// The private key of `client_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
}

/// Environment variable naming an [`ExportedProfile`] file to use instead of
/// the profiles in `config.toml` (unless a profile is named explicitly).
pub const PROFILE_PATH_ENV: &str = "SLUICE_PROFILE_PATH";
/// Fluvio's name for [`PROFILE_PATH_ENV`], honoured too.
pub const FLUVIO_PROFILE_PATH_ENV: &str = "FLV_PROFILE_PATH";
/// Bytes an [`ExportedProfile`] file may hold: a few certificates.
pub const PROFILE_FILE_BYTES_MAX: u64 = 1024 * 1024;

impl ExportedProfile {
    /// `profile` (called `name`, in `home`) with its certificate files read in.
    pub fn from_profile(home: &Path, name: &str, profile: &Profile) -> Result<Self> {
        let read = |path: &Path, what| read_pem(&Profile::resolve(home, path), what);
        let (client_cert, client_key) = match (&profile.client_cert, &profile.client_key) {
            (Some(cert), Some(key)) => (
                Some(read(cert, "cannot read the client certificate")?),
                Some(read(key, "cannot read the client key")?),
            ),
            (None, None) => (None, None),
            _ => {
                return Err(ClientError::InvalidConfig {
                    what: "connection profile",
                    reason: format!(
                        "profile {name:?} sets only one of client_cert and client_key; set both or neither"
                    ),
                });
            }
        };
        Ok(Self {
            endpoint: profile.endpoint.clone(),
            tls: ExportedTls {
                ca_cert: read(&profile.ca_cert, "cannot read the cluster CA certificate")?,
                client_cert,
                client_key,
            },
        })
    }

    /// The file named by [`PROFILE_PATH_ENV`] or [`FLUVIO_PROFILE_PATH_ENV`]
    /// (the first that is set and not empty), if any.
    pub fn path_from_env() -> Option<PathBuf> {
        [PROFILE_PATH_ENV, FLUVIO_PROFILE_PATH_ENV]
            .into_iter()
            .find_map(|var| std::env::var_os(var).filter(|v| !v.is_empty()))
            .map(PathBuf::from)
    }

    /// Reads an exported profile: TOML, or JSON (`profile export -O json`).
    pub fn load(path: &Path) -> Result<Self> {
        let invalid = |reason: String| ClientError::File {
            what: "cannot use the exported profile",
            path: path.to_path_buf(),
            reason,
        };
        let size = std::fs::metadata(path)
            .map_err(|e| invalid(e.to_string()))?
            .len();
        if size > PROFILE_FILE_BYTES_MAX {
            return Err(invalid(format!(
                "it holds {size} bytes, more than the {PROFILE_FILE_BYTES_MAX} a profile may; \
                 write it with `sluice profile export`"
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
        let parsed = if text.trim_start().starts_with('{') {
            serde_json::from_str(&text).map_err(|e| e.to_string())
        } else {
            toml::from_str(&text).map_err(|e| e.to_string())
        };
        let profile: Self = parsed.map_err(|e| {
            invalid(format!(
                "{e}; expected `endpoint` and a `tls` section with `ca_cert` (as `sluice profile \
                 export` writes)"
            ))
        })?;
        if profile.tls.client_cert.is_some() != profile.tls.client_key.is_some() {
            return Err(invalid(
                "it sets only one of tls.client_cert and tls.client_key; set both or neither"
                    .into(),
            ));
        }
        Ok(profile)
    }
}

fn read_pem(path: &Path, what: &'static str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| ClientError::File {
        what,
        path: path.to_path_buf(),
        reason: format!("{e}; check the profile in config.toml"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(endpoint: &str) -> Profile {
        Profile {
            endpoint: endpoint.into(),
            ca_cert: "local/ca.pem".into(),
            client_cert: None,
            client_key: None,
        }
    }

    #[test]
    fn missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            ClientConfig::load(dir.path()).unwrap(),
            ClientConfig::default()
        );
    }

    #[test]
    fn save_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("nested");
        let mut config = ClientConfig::default();
        config.set_profile("local", profile("127.0.0.1:9003"));
        config.set_profile("other", profile("10.0.0.1:9003"));
        config.set_current("local");
        config.save(&home).unwrap();
        let loaded = ClientConfig::load(&home).unwrap();
        assert_eq!(loaded, config);
        assert_eq!(loaded.profile(None).unwrap().0, "local");
        assert_eq!(
            loaded.profile(Some("other")).unwrap().1.endpoint,
            "10.0.0.1:9003"
        );
        assert!(loaded.profile(Some("nope")).is_none());
        let mut removed = loaded.clone();
        assert!(removed.remove_profile("local").is_some());
        assert_eq!(removed.current_profile, None);
        assert!(removed.remove_profile("local").is_none());
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(&home)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(CONFIG_FILE)]);
    }

    #[test]
    fn single_profile_is_used_without_current() {
        let mut config = ClientConfig::default();
        config.set_profile("only", profile("h:1"));
        assert_eq!(config.profile(None).unwrap().0, "only");
        config.set_profile("second", profile("h:2"));
        assert!(config.profile(None).is_none());
    }

    #[test]
    fn malformed_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), "profiles = 3").unwrap();
        let err = ClientConfig::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("config.toml"), "{err}");
    }

    #[test]
    fn relative_paths_resolve_against_home() {
        let home = Path::new("/h");
        assert_eq!(
            Profile::resolve(home, Path::new("a/ca.pem")),
            Path::new("/h/a/ca.pem")
        );
        assert_eq!(
            Profile::resolve(home, Path::new("/x/ca.pem")),
            Path::new("/x/ca.pem")
        );
    }
}
