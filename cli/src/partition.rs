//! `sluice partition list [TOPIC]` and `sluice partition reassign`.

use clap::Subcommand;
use serde::Serialize;
use sluice_client::proto::PartitionStatus;

use crate::output::{self, Table, human_bytes};
use crate::{Globals, OutputArgs};

#[derive(Debug, Subcommand)]
pub enum PartitionCmd {
    /// List partitions: leader, replicas, offsets and replica lag.
    #[command(alias = "ls")]
    List {
        /// Only this topic's partitions.
        topic: Option<String>,
        /// The system topics' partitions instead of the others'.
        #[arg(short = 's', long, conflicts_with = "topic")]
        system: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Move a partition to another set of SPUs: the new ones catch up from the
    /// current replicas, then take over; the ones left out delete their copy.
    #[command(visible_alias = "move")]
    Reassign {
        /// The topic.
        topic: String,
        /// The partition to move.
        #[arg(short = 'p', long)]
        partition: u32,
        /// The SPU ids that should hold the partition, e.g. `2,3,4`.
        #[arg(long, value_delimiter = ',', required = true, value_name = "ID,ID,...")]
        replicas: Vec<u64>,
        /// Return once the move is recorded, without waiting for it to finish.
        #[arg(long)]
        no_wait: bool,
        /// Give up waiting after this long (the move goes on in the cluster).
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
}

/// A partition as printed with `-O json|yaml`; field names are a stable interface.
#[derive(Debug, Serialize)]
pub struct PartitionOut {
    pub topic: String,
    pub partition: u32,
    pub leader: Option<u64>,
    pub start_offset: u64,
    pub committed_offset: u64,
    pub end_offset: u64,
    pub size_bytes: u64,
    pub replicas: Vec<ReplicaOut>,
    /// Replicas a reassignment is moving the partition away from.
    pub leaving: Vec<u64>,
}

#[derive(Debug, Serialize)]
pub struct ReplicaOut {
    pub node: u64,
    /// Raft entries not yet confirmed to the leader; null when the answering
    /// node does not lead the partition.
    pub lag_entries: Option<u64>,
}

impl From<&PartitionStatus> for PartitionOut {
    fn from(p: &PartitionStatus) -> Self {
        Self {
            topic: p.topic.clone(),
            partition: p.partition,
            leader: p.leader,
            start_offset: p.start_offset,
            committed_offset: p.committed_offset,
            end_offset: p.end_offset,
            size_bytes: p.size_bytes,
            replicas: p
                .replicas
                .iter()
                .map(|r| ReplicaOut {
                    node: r.node,
                    lag_entries: r.lag_entries,
                })
                .collect(),
            leaving: p.leaving.clone(),
        }
    }
}

pub async fn run(cmd: PartitionCmd, globals: &Globals) -> anyhow::Result<()> {
    let (topic, system, out) = match cmd {
        PartitionCmd::List {
            topic,
            system,
            output,
        } => (topic, system, output),
        PartitionCmd::Reassign {
            topic,
            partition,
            replicas,
            no_wait,
            timeout,
        } => return reassign(globals, &topic, partition, replicas, no_wait, timeout).await,
    };
    let client = crate::connect(globals).await?;
    let mut partitions = if system {
        client.list_system_partitions().await?
    } else {
        client.list_partitions(topic.as_deref()).await?
    };
    partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let rows: Vec<PartitionOut> = partitions.iter().map(PartitionOut::from).collect();
    output::print(out.output, &rows, || table(&rows))
}

pub(crate) async fn reassign(
    globals: &Globals,
    topic: &str,
    partition: u32,
    replicas: Vec<u64>,
    no_wait: bool,
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let client = crate::connect(globals).await?;
    let assignment = client
        .reassign_partition(topic, partition, replicas.clone())
        .await
        .with_context(|| format!("cannot reassign partition {topic}/{partition}"))?;
    let list = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    if no_wait {
        println!(
            "partition {topic}/{partition} is moving to SPUs {}; follow it with `sluice partition list {topic}`",
            list(&assignment.replicas)
        );
        return Ok(());
    }
    let progress = crate::progress::spinner(&format!(
        "moving {topic}/{partition} to SPUs {}",
        list(&assignment.replicas)
    ));
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let partitions = client.list_partitions(Some(topic)).await?;
        if let Some(p) = partitions.iter().find(|p| p.partition == partition) {
            // Done: the old replicas are gone and the new set has a leader.
            if p.leaving.is_empty() && p.leader.is_some() {
                progress.finish_and_clear();
                println!(
                    "partition {topic}/{partition} now lives on SPUs {} (leader {})",
                    list(&p.replicas.iter().map(|r| r.node).collect::<Vec<_>>()),
                    p.leader.unwrap_or_default()
                );
                return Ok(());
            }
            let lag: Vec<String> = p
                .replicas
                .iter()
                .map(|r| match r.lag_entries {
                    Some(l) => format!("{}:{l}", r.node),
                    None => format!("{}:-", r.node),
                })
                .collect();
            progress.set_message(format!(
                "moving {topic}/{partition}: replica lag {} (entries), leaving {}",
                lag.join(" "),
                list(&p.leaving)
            ));
        }
        if std::time::Instant::now() > deadline {
            progress.finish_and_clear();
            anyhow::bail!(
                "partition {topic}/{partition} is still moving after {timeout:?} (the move goes on in the cluster); follow it with `sluice partition list {topic}` and check the new replicas' node logs"
            );
        }
        tokio::time::sleep(crate::timeouts::REASSIGN_POLL).await;
    }
}

fn table(rows: &[PartitionOut]) -> String {
    if rows.is_empty() {
        return "no partitions\n".into();
    }
    let mut table = Table::new(&[
        "TOPIC",
        "PARTITION",
        "LEADER",
        "REPLICAS",
        "START",
        "COMMITTED",
        "END",
        "SIZE",
        "LAG",
    ]);
    for p in rows {
        let mut replicas: Vec<String> = p.replicas.iter().map(|r| r.node.to_string()).collect();
        // Replicas still to be dropped by a running reassignment, marked `-`.
        replicas.extend(p.leaving.iter().map(|n| format!("-{n}")));
        let lag: Vec<String> = p
            .replicas
            .iter()
            .map(|r| match r.lag_entries {
                Some(lag) => format!("{}:{lag}", r.node),
                None => format!("{}:-", r.node),
            })
            .collect();
        table.row(vec![
            p.topic.clone(),
            p.partition.to_string(),
            p.leader.map_or("none".into(), |l| l.to_string()),
            replicas.join(","),
            p.start_offset.to_string(),
            p.committed_offset.to_string(),
            p.end_offset.to_string(),
            human_bytes(p.size_bytes),
            lag.join(","),
        ]);
    }
    table.render()
}
