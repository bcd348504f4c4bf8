//! `sluice cluster ca ...`: the cluster CA and the certificates of a
//! multi-host cluster, whose nodes are started one by one with
//! `sluice node run --config FILE` instead of `cluster start --local`.
//!
//! The operator keeps the CA directory (`ca.pem`, `ca.key`) on one trusted
//! machine and issues from it:
//!
//! - a node certificate per node, written straight into `<data dir>/tls/`
//!   (`node.pem`, `node.key`, `ca.pem`), where `node run` reads it;
//! - client certificates (`client.pem`, `client.key`, `ca.pem`) for the
//!   machines that run client commands, optionally with a connection profile
//!   in `$SLUICE_HOME/config.toml` listing the cluster's nodes.
//!
//! Keys are never overwritten without `--force`: a replaced CA key orphans
//! every certificate it issued, and a replaced node key must be copied to its
//! node and the node restarted, so both should be deliberate.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use sluice_client::config::{ClientConfig, Profile};
use sluice_transport::ClusterCa;
use sluice_transport::tls::{CA_CERT_FILE, CA_KEY_FILE};

use crate::Globals;

/// Longest cluster id accepted: it ends up in certificate subjects and
/// every node's identity file, where a short token is enough.
const MAX_CLUSTER_ID_LEN: usize = 64;

#[derive(Debug, Subcommand)]
pub enum CaCmd {
    /// Create a new cluster CA (ca.pem, ca.key) in a directory and print the cluster id.
    Create(CreateArgs),
    /// Issue a node certificate (into a node's `<data dir>/tls`) or a client certificate.
    Issue(IssueArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Directory for ca.pem and ca.key (created if needed). Keep it off the
    /// nodes: whoever holds ca.key can join the cluster.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The cluster's id, used as `cluster_id` in every node's config
    /// (default: a new unique id). Letters, digits, '-', '_' and '.'.
    #[arg(long, value_name = "ID")]
    pub cluster_id: Option<String>,
    /// Replace a CA that already exists in DIR (every certificate it issued stops working).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("subject").required(true).args(["node_id", "client"])))]
pub struct IssueArgs {
    /// Directory holding the cluster CA (ca.pem, ca.key), as `ca create` wrote it.
    #[arg(long, value_name = "CA_DIR")]
    pub dir: PathBuf,
    /// Issue the certificate of node N (`id` in its config): writes node.pem, node.key, ca.pem.
    #[arg(long, value_name = "N")]
    pub node_id: Option<u64>,
    /// Issue a client certificate called NAME instead: writes client.pem, client.key, ca.pem.
    #[arg(long, value_name = "NAME", conflicts_with = "host")]
    pub client: Option<String>,
    /// IP address or DNS name the node is reached at (repeat, or separate with commas);
    /// recorded in the certificate.
    #[arg(long, value_delimiter = ',', value_name = "IP_OR_NAME")]
    pub host: Vec<String>,
    /// Where to write the files: for a node, `<its data dir>/tls` (created if needed).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// With --client: also write connection profile NAME in $SLUICE_HOME/config.toml
    /// (and make it current), using the files written to --out.
    #[arg(long, value_name = "NAME", requires_all = ["client", "endpoints"])]
    pub save_profile: Option<String>,
    /// With --save-profile: the nodes' addresses; the client fails over between them.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "HOST:PORT,...",
        requires = "save_profile"
    )]
    pub endpoints: Vec<String>,
    /// Replace certificate and key files that already exist in --out.
    #[arg(long)]
    pub force: bool,
}

pub async fn run(cmd: CaCmd, globals: &Globals) -> anyhow::Result<()> {
    match cmd {
        CaCmd::Create(args) => create(args),
        CaCmd::Issue(args) => issue(args, globals),
    }
}

fn create(args: CreateArgs) -> anyhow::Result<()> {
    let dir = absolute(&args.dir, "--dir")?;
    let cluster_id = match args.cluster_id {
        Some(id) => {
            check_cluster_id(&id)?;
            id
        }
        None => new_cluster_id(),
    };
    if !args.force {
        for file in [CA_KEY_FILE, CA_CERT_FILE] {
            let path = dir.join(file);
            if path.exists() {
                bail!(
                    "a cluster CA already exists in {} ({file} is there): replacing it would \
                     invalidate every certificate it issued; use another --dir, or pass --force \
                     to replace it",
                    dir.display()
                );
            }
        }
    }
    let ca = ClusterCa::generate(&cluster_id)?;
    ca.save(&dir)
        .with_context(|| format!("cannot save the cluster CA in {}", dir.display()))?;
    // The id alone on stdout, so scripts can capture it; the guidance on stderr.
    println!("{cluster_id}");
    eprintln!(
        "Created the CA of cluster {cluster_id} in {} ({CA_CERT_FILE}, {CA_KEY_FILE}).\n\
         Set cluster_id = \"{cluster_id}\" in every node's config, then issue each node's \
         certificate with `sluice cluster ca issue --dir {} --node-id N --host ADDR --out \
         DATA_DIR/tls`. Keep {CA_KEY_FILE} private and off the nodes.",
        dir.display(),
        dir.display()
    );
    Ok(())
}

fn issue(args: IssueArgs, globals: &Globals) -> anyhow::Result<()> {
    let ca_dir = absolute(&args.dir, "--dir")?;
    let out = absolute(&args.out, "--out")?;
    if same_dir(&ca_dir, &out) {
        bail!(
            "--out {} is the CA directory: a node or client directory must not hold {CA_KEY_FILE}; \
             pass the node's `<data dir>/tls` (or a client directory) as --out",
            out.display()
        );
    }
    let ca = ClusterCa::load(&ca_dir)
        .with_context(|| format!("cannot load the cluster CA from {}", ca_dir.display()))?;

    let (name, stem) = match (&args.node_id, &args.client) {
        (Some(id), None) => (format!("node-{id}"), "node"),
        (None, Some(client)) => {
            check_client_name(client)?;
            (client.clone(), "client")
        }
        // clap's "subject" group makes exactly one of them present.
        _ => bail!("pass exactly one of --node-id N or --client NAME"),
    };
    // A super user by default; any other principal holds what ACLs grant it.
    let holds = if args.client.as_deref() == Some("admin") {
        "a super user of nodes that keep the default `super_users`"
    } else {
        "what `sluice acl add` grants it"
    };
    let (ips, dns) = split_hosts(&args.host)?;
    let profile = match &args.save_profile {
        Some(name) => {
            let endpoints = profile_endpoints(name, &args.endpoints)?;
            // A malformed config.toml is reported before the certificate is written.
            ClientConfig::load(&globals.home)?;
            Some((name.clone(), endpoints))
        }
        None => None,
    };

    let cert_path = out.join(format!("{stem}.pem"));
    let key_path = out.join(format!("{stem}.key"));
    let ca_path = out.join(CA_CERT_FILE);
    if !args.force {
        for path in [&key_path, &cert_path] {
            if path.exists() {
                bail!(
                    "{} already exists: pass --force to replace it (then restart whatever uses \
                     it), or choose another --out",
                    path.display()
                );
            }
        }
        if let Ok(existing) = std::fs::read_to_string(&ca_path)
            && existing != ca.cert_pem()
        {
            bail!(
                "{} holds another CA's certificate than the one in {}: that directory belongs \
                 to another cluster; pass --force to replace it, or choose another --out",
                ca_path.display(),
                ca_dir.display()
            );
        }
    }

    let dns_refs: Vec<&str> = dns.iter().map(String::as_str).collect();
    let pair = match (args.node_id, &args.client) {
        (Some(id), _) => ca.issue_node(id, &dns_refs, &ips)?,
        (None, Some(client)) => ca.issue_client(client)?,
        (None, None) => bail!("pass exactly one of --node-id N or --client NAME"),
    };
    pair.save(&out, stem)
        .with_context(|| format!("cannot write the {stem} certificate into {}", out.display()))?;
    std::fs::write(&ca_path, ca.cert_pem()).with_context(|| {
        format!(
            "cannot write {}; check that the directory is writable",
            ca_path.display()
        )
    })?;
    println!(
        "Issued {name}'s certificate (cluster {}) into {}: {stem}.pem, {stem}.key, {CA_CERT_FILE}",
        ca.cluster_id(),
        out.display()
    );
    if args.client.is_some() {
        println!("Principal {name} holds {holds}.");
    }

    if let Some((profile, endpoints)) = profile {
        save_profile(
            &globals.home,
            &profile,
            &endpoints,
            &ca_path,
            &cert_path,
            &key_path,
        )?;
    } else if args.client.is_some() {
        println!(
            "To use it, add a profile to {} (or rerun with --save-profile NAME --endpoints \
             HOST:PORT,...):\n\n[profiles.NAME]\nendpoint = \"HOST:PORT,HOST:PORT\"\n\
             ca_cert = {:?}\nclient_cert = {:?}\nclient_key = {:?}",
            ClientConfig::path(&globals.home).display(),
            ca_path.display().to_string(),
            cert_path.display().to_string(),
            key_path.display().to_string(),
        );
    }
    Ok(())
}

/// The `--endpoints` of `--save-profile`, checked before anything is
/// written so a typo does not leave a certificate without its profile.
fn profile_endpoints(name: &str, endpoints: &[String]) -> anyhow::Result<Vec<String>> {
    if name.trim().is_empty() {
        bail!("--save-profile needs a profile name, e.g. --save-profile prod");
    }
    let endpoints: Vec<String> = endpoints
        .iter()
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    if endpoints.is_empty() {
        bail!("--endpoints names no node: list the nodes' advertised HOST:PORT, comma-separated");
    }
    for endpoint in &endpoints {
        let has_port = endpoint
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !has_port {
            bail!(
                "endpoint {endpoint:?} is not HOST:PORT: give each node's advertised address, \
                 e.g. 10.0.0.1:9003"
            );
        }
    }
    Ok(endpoints)
}

/// Writes profile `name` with every node as endpoint and makes it current,
/// so client commands need no flags afterwards.
fn save_profile(
    home: &Path,
    name: &str,
    endpoints: &[String],
    ca_cert: &Path,
    client_cert: &Path,
    client_key: &Path,
) -> anyhow::Result<()> {
    let mut config = ClientConfig::load(home)?;
    config.set_profile(
        name,
        Profile {
            endpoint: endpoints.join(","),
            ca_cert: ca_cert.to_path_buf(),
            client_cert: Some(client_cert.to_path_buf()),
            client_key: Some(client_key.to_path_buf()),
        },
    );
    config.set_current(name);
    config.save(home)?;
    println!(
        "Saved profile \"{name}\" -> {} in {} (now the current profile)",
        endpoints.join(","),
        ClientConfig::path(home).display()
    );
    Ok(())
}

/// `--host` values split into IP addresses and DNS names, checked to be one or the other.
fn split_hosts(hosts: &[String]) -> anyhow::Result<(Vec<IpAddr>, Vec<String>)> {
    let mut ips = Vec::new();
    let mut dns = Vec::new();
    for host in hosts.iter().map(|h| h.trim()).filter(|h| !h.is_empty()) {
        if let Ok(ip) = host.parse::<IpAddr>() {
            ips.push(ip);
        } else if is_dns_name(host) {
            dns.push(host.to_ascii_lowercase());
        } else {
            bail!(
                "--host {host:?} is neither an IP address nor a DNS name: give the address or \
                 name the node is reached at, without a port (e.g. 10.0.0.1 or node1.example.com)"
            );
        }
    }
    Ok((ips, dns))
}

/// Letters, digits and '-' in dot-separated labels of 1 to 63 characters.
fn is_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A client's name becomes its certificate's common name and a DNS SAN.
fn check_client_name(name: &str) -> anyhow::Result<()> {
    sluice_transport::check_principal_name(name)
        .map_err(|reason| anyhow::anyhow!("--client: {reason}"))
}

fn check_cluster_id(id: &str) -> anyhow::Result<()> {
    let ok = !id.is_empty()
        && id.len() <= MAX_CLUSTER_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        bail!(
            "--cluster-id {id:?} is not a usable id: use 1 to {MAX_CLUSTER_ID_LEN} letters, \
             digits, '-', '_' or '.' (or leave it out for a generated one)"
        );
    }
    Ok(())
}

/// A fresh id, unique enough for clusters created by hand: time and pid.
fn new_cluster_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("sluice-{:x}{:04x}", nanos, std::process::id() & 0xffff)
}

/// Paths written into profiles and messages are absolute, so they still
/// hold when commands run from another directory.
fn absolute(path: &Path, flag: &str) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("bad {flag} {}", path.display()))
}

/// Whether two directories are the same one (by canonical path when both exist).
fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_split_into_ips_and_names() {
        let hosts = ["10.0.0.1", "Node1.example.com", " ", "::1"].map(String::from);
        let (ips, dns) = split_hosts(&hosts).unwrap();
        assert_eq!(ips.len(), 2);
        assert_eq!(dns, ["node1.example.com"]);
        let err = split_hosts(&["10.0.0.1:9003".into()]).unwrap_err();
        assert!(err.to_string().contains("without a port"), "{err}");
    }

    #[test]
    fn cluster_ids_are_short_tokens() {
        assert!(check_cluster_id("prod-eu.1_a").is_ok());
        assert!(check_cluster_id("").is_err());
        assert!(check_cluster_id("has space").is_err());
        assert!(check_cluster_id(&"x".repeat(65)).is_err());
        assert!(check_cluster_id(&new_cluster_id()).is_ok());
    }

    #[test]
    fn create_refuses_to_replace_a_ca_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let args = |force| CreateArgs {
            dir: dir.path().to_path_buf(),
            cluster_id: Some("c1".into()),
            force,
        };
        create(args(false)).unwrap();
        let first = std::fs::read_to_string(dir.path().join(CA_KEY_FILE)).unwrap();
        let err = create(args(false)).unwrap_err().to_string();
        assert!(err.contains("--force"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(CA_KEY_FILE)).unwrap(),
            first
        );
        create(args(true)).unwrap();
        assert_ne!(
            std::fs::read_to_string(dir.path().join(CA_KEY_FILE)).unwrap(),
            first
        );
    }

    #[test]
    fn issue_writes_the_node_files_once_and_a_client_profile() {
        let tmp = tempfile::tempdir().unwrap();
        let ca_dir = tmp.path().join("ca");
        create(CreateArgs {
            dir: ca_dir.clone(),
            cluster_id: Some("c1".into()),
            force: false,
        })
        .unwrap();
        let globals = Globals {
            home: tmp.path().join("home"),
            profile: None,
            endpoint: None,
            log_format: crate::LogFormat::Text,
            tls: None,
        };
        let node = |force| IssueArgs {
            dir: ca_dir.clone(),
            node_id: Some(2),
            client: None,
            host: vec!["10.0.0.2".into(), "node2.example.com".into()],
            out: tmp.path().join("node-2/tls"),
            save_profile: None,
            endpoints: vec![],
            force,
        };
        issue(node(false), &globals).unwrap();
        let tls = tmp.path().join("node-2/tls");
        for file in ["node.pem", "node.key", "ca.pem"] {
            assert!(tls.join(file).exists(), "{file}");
        }
        let identity = |dir: &Path, stem: &str| {
            sluice_transport::CertKeyPair::load(dir, stem)
                .unwrap()
                .identity()
                .unwrap()
        };
        assert_eq!(
            identity(&tls, "node"),
            sluice_transport::PeerIdentity::Node(2)
        );
        let err = issue(node(false), &globals).unwrap_err().to_string();
        assert!(err.contains("node.key already exists"), "{err}");
        issue(node(true), &globals).unwrap();

        let mut into_ca = node(true);
        into_ca.out = ca_dir.clone();
        let err = issue(into_ca, &globals).unwrap_err().to_string();
        assert!(err.contains("is the CA directory"), "{err}");

        issue(
            IssueArgs {
                dir: ca_dir.clone(),
                node_id: None,
                client: Some("ops".into()),
                host: vec![],
                out: tmp.path().join("client"),
                save_profile: Some("remote".into()),
                endpoints: vec!["10.0.0.1:9003".into(), "10.0.0.2:9003".into()],
                force: false,
            },
            &globals,
        )
        .unwrap();
        assert_eq!(
            identity(&tmp.path().join("client"), "client"),
            sluice_transport::PeerIdentity::Client("ops".into())
        );
        // A bad endpoint is refused before any file is written.
        let err = issue(
            IssueArgs {
                dir: ca_dir.clone(),
                node_id: None,
                client: Some("ops".into()),
                host: vec![],
                out: tmp.path().join("client-2"),
                save_profile: Some("other".into()),
                endpoints: vec!["10.0.0.1".into()],
                force: false,
            },
            &globals,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("is not HOST:PORT"), "{err}");
        assert!(!tmp.path().join("client-2").exists());
        let config = ClientConfig::load(&globals.home).unwrap();
        let (name, profile) = config.profile(None).unwrap();
        assert_eq!(name, "remote");
        assert_eq!(profile.endpoint, "10.0.0.1:9003,10.0.0.2:9003");
        assert_eq!(
            profile.client_key.as_deref(),
            Some(tmp.path().join("client/client.key").as_path())
        );
    }
}
