//! The consumer-group workload (`--workload log,group`): members of one group
//! read the log workload's topic from its beginning while the nemesis works,
//! and come and go: each member lives a few seconds, then leaves (commits and
//! says goodbye) or is dropped without a word (a crash: its partitions move
//! after its session timeout). A sampler lists the group's committed offsets.
//! After the heal a last member drains every partition to its end.
//!
//! Recorded: `group_assign` when a member's application learns it was given
//! partitions (before any of their records), `group_poll` for each batch it
//! was handed, `group_offsets` for each listing. The checker (`checker/group.rs`)
//! finds skipped records, two members reading one partition at once, and
//! committed offsets going back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sluice_client::proto::StartOffset;
use sluice_client::{Client, CommitMode, GroupConfig, GroupConsumer, GroupEvent};
use tokio::time::{Instant, sleep, timeout};

use super::rng::Rng;
use super::workload::{Ctx, connect};
use crate::history::{Call, GroupAssign, GroupOffsets, GroupPoll, Record};

/// The group's name.
pub const GROUP: &str = "jepsen-group";
/// Members alive at once.
pub const MEMBERS: u64 = 3;
/// Short, so crashed members' partitions move within a run.
const SESSION: Duration = Duration::from_secs(3);
/// How long the drain after the heal may take.
const DRAIN_WAIT: Duration = Duration::from_secs(60);

fn config() -> GroupConfig {
    GroupConfig {
        session_timeout: SESSION,
        heartbeat_interval: Duration::from_millis(500),
        commit: CommitMode::Auto {
            interval: Duration::from_secs(1),
        },
        start: StartOffset::Beginning,
        ..GroupConfig::default()
    }
}

async fn client(ctx: &Ctx) -> Client {
    loop {
        if let Ok(c) = connect(&ctx.home).await {
            return c;
        }
        sleep(Duration::from_millis(300)).await;
    }
}

/// One member slot: members one after another until the run stops.
pub async fn slot(ctx: Arc<Ctx>, slot: u64) {
    let mut rng = Rng::derive(ctx.seed, "group-member", slot);
    while !ctx.stopped() {
        let lifetime = Duration::from_millis(rng.range(2_000, 10_000));
        let leaves = rng.range(0, 2) == 0;
        member(&ctx, lifetime, leaves, false).await;
    }
}

/// Records what `event` tells.
fn record(ctx: &Ctx, process: u64, member: &str, event: GroupEvent, is_final: bool) {
    match event {
        GroupEvent::Assigned(partitions) => {
            let call = Call::GroupAssign(GroupAssign {
                member: member.to_string(),
                partitions,
            });
            ctx.rec.invoke(process, call.clone(), None);
            ctx.rec.ok(process, call, None);
        }
        GroupEvent::Records(batch) => {
            let mut by_partition: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
            for r in batch {
                by_partition
                    .entry(r.partition)
                    .or_default()
                    .push(Record::new(
                        r.offset,
                        String::from_utf8_lossy(&r.value).into_owned(),
                    ));
            }
            for (partition, records) in by_partition {
                let call = |records| {
                    Call::GroupPoll(GroupPoll {
                        member: member.to_string(),
                        partition,
                        is_final,
                        records,
                    })
                };
                ctx.rec.invoke(process, call(None), None);
                ctx.rec.ok(process, call(Some(records)), None);
            }
        }
        GroupEvent::Revoked(_) => {}
    }
}

/// One member: joins, reads for `lifetime` (or until the run stops), then
/// leaves or is dropped.
async fn member(ctx: &Ctx, lifetime: Duration, leaves: bool, is_final: bool) {
    let client = client(ctx).await;
    let joined = timeout(
        Duration::from_secs(10),
        GroupConsumer::join(&client, GROUP, &ctx.topic, config()),
    )
    .await;
    let Ok(Ok(mut consumer)) = joined else {
        sleep(Duration::from_millis(500)).await;
        return;
    };
    let process = ctx.rec.new_process();
    let id = consumer.member_id().to_string();
    let until = Instant::now() + lifetime;
    while Instant::now() < until && !ctx.stopped() {
        match timeout(Duration::from_millis(200), consumer.next_event()).await {
            Ok(Some(Ok(event))) => record(ctx, process, &id, event, is_final),
            Ok(Some(Err(_))) | Ok(None) => break,
            Err(_) => {}
        }
    }
    if leaves {
        let _ = timeout(Duration::from_secs(10), consumer.leave()).await;
    }
}

/// Lists the group's committed offsets every 500 ms until the run stops.
pub async fn sampler(ctx: Arc<Ctx>) {
    let client = client(&ctx).await;
    let process = ctx.rec.new_process();
    while !ctx.stopped() {
        ctx.rec
            .invoke(process, Call::GroupOffsets(GroupOffsets::default()), None);
        let listed = timeout(
            Duration::from_secs(5),
            client.consumer_offsets(Some(GROUP), Some(&ctx.topic)),
        )
        .await;
        match listed {
            Ok(Ok(rows)) => {
                let offsets = rows
                    .into_iter()
                    .filter_map(|r| Some((r.partition, r.offset?)))
                    .collect();
                let call = Call::GroupOffsets(GroupOffsets {
                    offsets: Some(offsets),
                });
                ctx.rec.ok(process, call, None);
            }
            // A listing changes nothing: it definitely did not "take effect".
            Ok(Err(e)) => ctx.rec.fail(
                process,
                Call::GroupOffsets(GroupOffsets::default()),
                None,
                e.to_string(),
            ),
            Err(_) => ctx.rec.fail(
                process,
                Call::GroupOffsets(GroupOffsets::default()),
                None,
                "listing timed out".into(),
            ),
        }
        sleep(Duration::from_millis(500)).await;
    }
}

/// After the heal: one last member reads every partition until its
/// position reaches the partition's end (`ends`); then a final, empty poll
/// of each partition says it was drained. Says why when it did not get there.
pub async fn drain(ctx: &Ctx, ends: &BTreeMap<u32, u64>) -> Result<(), String> {
    let client = client(ctx).await;
    let deadline = Instant::now() + DRAIN_WAIT;
    let mut consumer = loop {
        match timeout(
            DRAIN_WAIT,
            GroupConsumer::join(&client, GROUP, &ctx.topic, config()),
        )
        .await
        {
            Ok(Ok(consumer)) => break consumer,
            Ok(Err(e)) if Instant::now() < deadline => {
                eprintln!("the draining member could not join ({e}); retrying");
                sleep(Duration::from_millis(500)).await;
            }
            Ok(Err(e)) => return Err(format!("could not join within {DRAIN_WAIT:?}: {e}")),
            Err(_) => return Err(format!("joining took over {DRAIN_WAIT:?}")),
        }
    };
    let process = ctx.rec.new_drain_process();
    let id = consumer.member_id().to_string();
    let mut read_to: BTreeMap<u32, u64> = BTreeMap::new();
    loop {
        let committed: BTreeMap<u32, u64> = client
            .consumer_offsets(Some(GROUP), Some(&ctx.topic))
            .await
            .map(|rows| {
                rows.into_iter()
                    .filter_map(|r| Some((r.partition, r.offset?)))
                    .collect()
            })
            .unwrap_or_default();
        let done = ends.iter().all(|(p, end)| {
            read_to.get(p).copied().unwrap_or(0) >= *end
                || committed.get(p).copied().unwrap_or(0) >= *end
        });
        if done {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "after {DRAIN_WAIT:?}, read to {read_to:?}, committed {committed:?}, ends {ends:?}"
            ));
        }
        if let Ok(Some(Ok(event))) =
            timeout(Duration::from_millis(200), consumer.next_event()).await
        {
            if let GroupEvent::Records(batch) = &event {
                for r in batch {
                    let at = read_to.entry(r.partition).or_default();
                    *at = (*at).max(r.offset + 1);
                }
            }
            record(ctx, process, &id, event, true);
        }
    }
    for p in ends.keys() {
        let call = |records| {
            Call::GroupPoll(GroupPoll {
                member: id.clone(),
                partition: *p,
                is_final: true,
                records,
            })
        };
        ctx.rec.invoke(process, call(None), None);
        ctx.rec.ok(process, call(Some(Vec::new())), None);
    }
    let _ = timeout(Duration::from_secs(10), consumer.leave()).await;
    Ok(())
}
