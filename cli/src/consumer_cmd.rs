//! `sluice consumer list|describe|delete`: the offsets consumers committed
//! (`sluice consume TOPIC -c NAME`) and how far behind each one is.

use std::collections::BTreeMap;

use anyhow::Context;
use clap::Subcommand;
use serde::Serialize;
use sluice_client::Client;
use sluice_client::proto::ConsumerOffset;

use crate::output::{self, Table, rfc3339_ms};
use crate::{Globals, OutputArgs};

#[derive(Debug, Subcommand)]
pub enum ConsumerCmd {
    /// Every consumer's committed offset and lag, per topic and partition.
    #[command(alias = "ls")]
    List {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// One consumer's committed offsets and lag.
    Describe {
        /// The consumer name (`consume -c NAME`).
        name: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Forget a consumer's committed offsets: its next run starts where its
    /// start flags say.
    #[command(alias = "rm")]
    Delete {
        /// The consumer name.
        name: String,
        /// Only its offsets on this topic.
        #[arg(long)]
        topic: Option<String>,
    },
}

/// A committed offset as printed with `-O json|yaml`; field names are a
/// stable interface.
#[derive(Debug, Serialize)]
pub struct ConsumerOut {
    pub consumer: String,
    /// The same name under Fluvio's field name, for its scripts.
    pub consumer_id: String,
    pub topic: String,
    pub partition: u32,
    /// The next offset the consumer reads (where it resumes); null where a
    /// group member owns the partition but has committed nothing yet.
    pub next_offset: Option<u64>,
    /// The offset of the last record the consumer processed, as Fluvio's
    /// `offset` field means it: `next_offset - 1`; null before the first.
    pub offset: Option<u64>,
    /// For a consumer group: the member reading the partition now.
    pub owner: Option<String>,
    /// The partition's end; `null` if no replica answered.
    pub end_offset: Option<u64>,
    /// Records between the committed offset and the end.
    pub lag: Option<u64>,
    pub committed_ms: i64,
}

pub async fn run(cmd: ConsumerCmd, globals: &Globals) -> anyhow::Result<()> {
    let client = crate::connect(globals).await?;
    match cmd {
        ConsumerCmd::List { output } => {
            let offsets = client.consumer_offsets(None, None).await?;
            let rows = with_lag(&client, offsets).await?;
            output::print(output.output, &rows, || table(&rows))
        }
        ConsumerCmd::Describe { name, output } => {
            let offsets = client.consumer_offsets(Some(&name), None).await?;
            if offsets.is_empty() {
                return Err(sluice_client::ClientError::Server(
                    sluice_client::proto::WireError::UnknownConsumer {
                        consumer: name,
                        topic: None,
                    },
                )
                .into());
            }
            let rows = with_lag(&client, offsets).await?;
            output::print(output.output, &rows, || table(&rows))
        }
        ConsumerCmd::Delete { name, topic } => {
            // What is deleted, to say so partition by partition (Fluvio's
            // lines); a consumer group with no offset yet has none to list.
            let offsets = client
                .consumer_offsets(Some(&name), topic.as_deref())
                .await
                .unwrap_or_default();
            client
                .delete_consumer(&name, topic.as_deref())
                .await
                .with_context(|| format!("cannot delete consumer {name}"))?;
            let mut said = String::new();
            for o in &offsets {
                said += &format!(
                    "consumer \"{name}\" on topic \"{}\" and partition \"{}\" deleted\n",
                    o.topic, o.partition
                );
            }
            if said.is_empty() {
                said = match topic {
                    Some(t) => format!("consumer \"{name}\" deleted on topic \"{t}\"\n"),
                    None => format!("consumer \"{name}\" deleted\n"),
                };
            }
            output::write_stdout(said.as_bytes())
        }
    }
}

/// Adds each partition's end and the lag behind it.
async fn with_lag(
    client: &Client,
    offsets: Vec<ConsumerOffset>,
) -> anyhow::Result<Vec<ConsumerOut>> {
    let mut ends: BTreeMap<(String, u32), u64> = BTreeMap::new();
    let topics: std::collections::BTreeSet<&str> =
        offsets.iter().map(|o| o.topic.as_str()).collect();
    for topic in topics {
        for p in client.list_partitions(Some(topic)).await? {
            if p.leader.is_some() {
                ends.insert((p.topic, p.partition), p.end_offset);
            }
        }
    }
    Ok(offsets
        .into_iter()
        .map(|o| {
            let end = ends.get(&(o.topic.clone(), o.partition)).copied();
            ConsumerOut {
                lag: end.zip(o.offset).map(|(e, at)| e.saturating_sub(at)),
                owner: o.owner,
                end_offset: end,
                consumer_id: o.consumer.clone(),
                consumer: o.consumer,
                topic: o.topic,
                partition: o.partition,
                next_offset: o.offset,
                offset: o.offset.and_then(|next| next.checked_sub(1)),
                committed_ms: o.committed_ms,
            }
        })
        .collect())
}

fn table(rows: &[ConsumerOut]) -> String {
    if rows.is_empty() {
        return "No consumers found\n".into();
    }
    let mut table = Table::new(&[
        "CONSUMER",
        "TOPIC",
        "PARTITION",
        "NEXT-OFFSET",
        "END",
        "LAG",
        "LAST COMMIT",
        "MEMBER",
    ]);
    let or_dash = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    for r in rows {
        table.row(vec![
            r.consumer.clone(),
            r.topic.clone(),
            r.partition.to_string(),
            or_dash(r.next_offset),
            or_dash(r.end_offset),
            or_dash(r.lag),
            if r.next_offset.is_some() {
                rfc3339_ms(r.committed_ms)
            } else {
                "-".into()
            },
            r.owner.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    table.render()
}
