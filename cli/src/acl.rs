//! `sluice acl add|list|remove`: who may do what on the cluster.
//!
//! An entry grants one principal (the name in a client certificate, see
//! `sluice cluster ca issue --client`) one operation on a resource. Only an
//! admin (a super user, or a principal granted `admin` on the cluster) may
//! change or list them.

use clap::{Args, Subcommand};
use serde::Serialize;
use sluice_proto::{AclEntry, Operation, ResourcePattern};

use crate::output::{self, Table};
use crate::{Globals, OutputArgs};

#[derive(Debug, Subcommand)]
pub enum AclCmd {
    /// Grant PRINCIPAL an operation on a resource.
    Add(EntryArgs),
    /// List every entry.
    #[command(alias = "ls")]
    List {
        /// Only the entries of this principal.
        #[arg(long, value_name = "NAME")]
        principal: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Withdraw an entry (the same flags that added it).
    #[command(alias = "rm")]
    Remove(EntryArgs),
}

/// One entry: principal, operation and exactly one resource.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("resource").required(true).args([
    "cluster", "topic", "topic_prefix", "smartmodule", "smartmodule_prefix"
])))]
pub struct EntryArgs {
    /// The principal: the NAME of its client certificate, or `anonymous`.
    #[arg(long, value_name = "NAME")]
    pub principal: String,
    /// admin (with --cluster), produce or consume (with a topic), register
    /// or use (with a SmartModule).
    #[arg(long, value_name = "OPERATION")]
    pub operation: Operation,
    /// The cluster itself (for `admin`).
    #[arg(long)]
    pub cluster: bool,
    /// The topic of this exact name.
    #[arg(long, value_name = "NAME")]
    pub topic: Option<String>,
    /// Every topic whose name starts with PREFIX (`""` for all topics).
    #[arg(long, value_name = "PREFIX")]
    pub topic_prefix: Option<String>,
    /// The SmartModule of this exact name.
    #[arg(long, value_name = "NAME")]
    pub smartmodule: Option<String>,
    /// Every SmartModule whose name starts with PREFIX (`""` for all).
    #[arg(long, value_name = "PREFIX")]
    pub smartmodule_prefix: Option<String>,
}

impl EntryArgs {
    /// The checked entry these flags name.
    fn entry(self) -> anyhow::Result<AclEntry> {
        let resource = if self.cluster {
            ResourcePattern::Cluster
        } else if let Some(name) = self.topic {
            ResourcePattern::Topic(name)
        } else if let Some(prefix) = self.topic_prefix {
            ResourcePattern::TopicPrefix(prefix)
        } else if let Some(name) = self.smartmodule {
            ResourcePattern::SmartModule(name)
        } else if let Some(prefix) = self.smartmodule_prefix {
            ResourcePattern::SmartModulePrefix(prefix)
        } else {
            // clap's "resource" group makes one of them present.
            anyhow::bail!(
                "pass one of --cluster, --topic, --topic-prefix, --smartmodule or --smartmodule-prefix"
            );
        };
        let entry = AclEntry {
            principal: self.principal,
            operation: self.operation,
            resource,
        };
        if entry.principal != sluice_proto::ANONYMOUS_PRINCIPAL {
            sluice_transport::check_principal_name(&entry.principal)
                .map_err(|reason| anyhow::anyhow!("--principal: {reason}"))?;
        }
        entry
            .validate()
            .map_err(|reason| anyhow::anyhow!("invalid ACL entry: {reason}"))?;
        Ok(entry)
    }
}

/// An entry as `-O json|yaml` prints it.
#[derive(Debug, Serialize)]
struct EntryOut {
    principal: String,
    operation: &'static str,
    resource_type: &'static str,
    pattern: &'static str,
    name: String,
}

impl From<&AclEntry> for EntryOut {
    fn from(e: &AclEntry) -> Self {
        let (pattern, name) = match &e.resource {
            ResourcePattern::Cluster => ("literal", String::new()),
            ResourcePattern::Topic(n) | ResourcePattern::SmartModule(n) => ("literal", n.clone()),
            ResourcePattern::TopicPrefix(p) | ResourcePattern::SmartModulePrefix(p) => {
                ("prefix", p.clone())
            }
        };
        Self {
            principal: e.principal.clone(),
            operation: e.operation.name(),
            resource_type: e.resource.kind().name(),
            pattern,
            name,
        }
    }
}

pub async fn run(cmd: AclCmd, globals: &Globals) -> anyhow::Result<()> {
    match cmd {
        AclCmd::Add(args) => {
            let entry = args.entry()?;
            let client = crate::connect(globals).await?;
            client.add_acl(entry.clone()).await?;
            println!("granted: {entry}");
            Ok(())
        }
        AclCmd::Remove(args) => {
            let entry = args.entry()?;
            let client = crate::connect(globals).await?;
            client.remove_acl(entry.clone()).await?;
            println!("withdrawn: {entry}");
            Ok(())
        }
        AclCmd::List { principal, output } => {
            let client = crate::connect(globals).await?;
            let mut entries = client.list_acls().await?;
            if let Some(principal) = &principal {
                entries.retain(|e| &e.principal == principal);
            }
            entries.sort();
            let rows: Vec<EntryOut> = entries.iter().map(EntryOut::from).collect();
            output::print(output.output, &rows, || table(&rows))
        }
    }
}

fn table(rows: &[EntryOut]) -> String {
    if rows.is_empty() {
        return "no ACL entries; grant one with `sluice acl add --principal NAME --operation \
                OPERATION --topic NAME`\n"
            .into();
    }
    let mut table = Table::new(&["PRINCIPAL", "OPERATION", "RESOURCE", "PATTERN", "NAME"]);
    for r in rows {
        table.row(vec![
            r.principal.clone(),
            r.operation.into(),
            r.resource_type.into(),
            r.pattern.into(),
            r.name.clone(),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: AclCmd,
    }

    fn parse(args: &[&str]) -> Result<AclEntry, String> {
        let cli = Cli::try_parse_from(std::iter::once("acl").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        match cli.cmd {
            AclCmd::Add(args) | AclCmd::Remove(args) => args.entry().map_err(|e| e.to_string()),
            AclCmd::List { .. } => Err("list".into()),
        }
    }

    #[test]
    fn flags_name_exactly_one_checked_entry() {
        let entry = parse(&[
            "add",
            "--principal",
            "alice",
            "--operation",
            "produce",
            "--topic",
            "orders",
        ])
        .unwrap();
        assert_eq!(entry.resource, ResourcePattern::Topic("orders".into()));
        let err = parse(&[
            "add",
            "--principal",
            "alice",
            "--operation",
            "admin",
            "--topic",
            "t",
        ])
        .unwrap_err();
        assert!(err.contains("--cluster"), "{err}");
        let err = parse(&[
            "add",
            "--principal",
            "a b",
            "--operation",
            "use",
            "--smartmodule",
            "m",
        ])
        .unwrap_err();
        assert!(err.contains("--principal"), "{err}");
        let err = parse(&[
            "add",
            "--principal",
            "alice",
            "--operation",
            "write",
            "--cluster",
        ])
        .unwrap_err();
        assert!(err.contains("produce"), "{err}");
        // One resource, not two, not none.
        assert!(parse(&["add", "--principal", "a", "--operation", "admin"]).is_err());
        assert!(
            parse(&[
                "rm",
                "--principal",
                "a",
                "--operation",
                "admin",
                "--cluster",
                "--topic",
                "t"
            ])
            .is_err()
        );
        assert_eq!(
            parse(&[
                "rm",
                "--principal",
                "anonymous",
                "--operation",
                "consume",
                "--topic-prefix",
                ""
            ])
            .unwrap()
            .resource,
            ResourcePattern::TopicPrefix(String::new())
        );
    }
}
