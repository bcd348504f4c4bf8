//! The pipeline workload (`--workload log,pipeline`): before the faults, a
//! topic derived from the log workload's (`DERIVED_TOPIC`, each value
//! upper-cased by the `uppercase-map` example, run by a connector the
//! cluster runs); the faults hit its nodes, and so its copy, as they come.
//! After the heal, each partition of both topics is read whole from its
//! leader until the derived one has caught up (or `CATCH_UP_WAIT`) and
//! recorded as a `pipeline_read`; `checker/pipeline.rs` then proves the
//! derived topic holds exactly the source's records, mapped, once, in order.

use std::time::Duration;

use anyhow::Context;
use sluice_client::Client;
use sluice_client::proto::{ConnectorSpec, FetchRequest, StartOffset, TopicSpec};
use tokio::time::{Instant, sleep};

use super::workload::{Ctx, connect};
use crate::history::{Call, PipelineRead, Record};

/// The derived topic (and its connector's name).
pub const DERIVED_TOPIC: &str = "jepsen-derived";
/// The registered map the derivation runs.
const MODULE: &str = "jepsen-upper";
/// How long after the heal the derived topic may take to catch up.
const CATCH_UP_WAIT: Duration = Duration::from_secs(90);
/// The header a derived record names its source offset in.
const SOURCE_OFFSET_HEADER: &str = "sluice-source-offset";

/// Registers the map and derives [`DERIVED_TOPIC`] from the log topic, as
/// `topic create jepsen-derived --from jepsen --transforms` would.
pub async fn setup(ctx: &Ctx, replication: u32) -> anyhow::Result<()> {
    let wasm = super::smartmodule::example_wasm("uppercase-map")?;
    let config = format!(
        "apiVersion: 0.1.0\nmeta:\n  name: {DERIVED_TOPIC}\n  type: derived-topic\n  topic: \
         {DERIVED_TOPIC}\nderived:\n  from: {}\ntransforms:\n  - uses: {MODULE}\n",
        ctx.topic
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = async {
            let client = connect(&ctx.home).await?;
            match client.create_smartmodule(MODULE, wasm.clone()).await {
                Ok(_) => {}
                Err(e) if e.to_string().contains("already exists") => {}
                Err(e) => return Err(anyhow::Error::new(e)),
            }
            let mut spec = TopicSpec::new(DERIVED_TOPIC);
            spec.partitions = ctx.partitions;
            spec.replication = replication;
            match client.create_topic(spec).await {
                Ok(_) => {}
                Err(e) if e.to_string().contains("already exists") => {}
                Err(e) => return Err(e.into()),
            }
            let spec = ConnectorSpec {
                name: DERIVED_TOPIC.into(),
                config: config.clone(),
            };
            let record = client.create_connector(spec).await?;
            eprintln!(
                "pipeline: {DERIVED_TOPIC} derived from {} by a connector on node {}",
                ctx.topic, record.node
            );
            anyhow::Ok(())
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(e).context("cannot set up the pipeline workload");
            }
            Err(_) => sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Reads both topics' partitions until the derived one holds as many
/// records as its source maps to (or `CATCH_UP_WAIT` passed), then
/// records the last reads. Returns whether it caught up.
pub async fn drain(ctx: &Ctx) -> bool {
    let deadline = Instant::now() + CATCH_UP_WAIT;
    let mut last: Vec<Option<PipelineRead>> = vec![None; ctx.partitions as usize];
    loop {
        if let Ok(client) = connect(&ctx.home).await {
            for p in 0..ctx.partitions {
                if let Ok(read) = read_both(&client, &ctx.topic, p).await {
                    last[p as usize] = Some(read);
                }
            }
            client.close().await;
        }
        let caught_up = last.iter().all(|r| r.as_ref().is_some_and(caught_up));
        if caught_up || Instant::now() > deadline {
            for (p, read) in last.into_iter().enumerate() {
                let process = ctx.rec.new_drain_process();
                let empty = PipelineRead {
                    partition: p as u32,
                    source: None,
                    derived: None,
                };
                ctx.rec
                    .invoke(process, Call::PipelineRead(empty.clone()), None);
                match read {
                    Some(read) => ctx.rec.ok(process, Call::PipelineRead(read), None),
                    None => ctx.rec.fail(
                        process,
                        Call::PipelineRead(empty),
                        None,
                        "no read of both topics succeeded".into(),
                    ),
                }
            }
            return caught_up;
        }
        sleep(Duration::from_secs(1)).await;
    }
}

/// Whether the derived partition holds an output for each source record
/// (what the checker then compares one by one).
fn caught_up(read: &PipelineRead) -> bool {
    let (Some(source), Some(derived)) = (&read.source, &read.derived) else {
        return false;
    };
    derived.len() >= source.len()
        && source
            .last()
            .is_none_or(|s| derived.iter().any(|d| d.2 == Some(s.offset)))
}

/// Partition `p` of the source topic and of the derived one, whole.
async fn read_both(client: &Client, topic: &str, p: u32) -> anyhow::Result<PipelineRead> {
    let source = read_all(client, topic, p)
        .await?
        .into_iter()
        .map(|r| Record::new(r.offset, String::from_utf8_lossy(&r.value)))
        .collect();
    let derived = read_all(client, DERIVED_TOPIC, p)
        .await?
        .into_iter()
        .map(|r| {
            let from = r
                .headers
                .iter()
                .find(|h| h.key == SOURCE_OFFSET_HEADER)
                .and_then(|h| std::str::from_utf8(&h.value).ok()?.parse().ok());
            (
                r.offset,
                String::from_utf8_lossy(&r.value).into_owned(),
                from,
            )
        })
        .collect();
    Ok(PipelineRead {
        partition: p,
        source: Some(source),
        derived: Some(derived),
    })
}

/// Every committed record of `topic`/`p`, from its leader.
async fn read_all(
    client: &Client,
    topic: &str,
    p: u32,
) -> anyhow::Result<Vec<sluice_client::proto::ConsumerRecord>> {
    let request = FetchRequest::new(topic, p).start(StartOffset::Beginning);
    let mut consumer = client.consume(request);
    let mut out = Vec::new();
    let read = async {
        while let Some(batch) = consumer.next_batch().await? {
            out.extend(batch);
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .context("reading a partition whole timed out")??;
    Ok(out)
}
