//! The task that samples the node's state into the gauges of
//! `crate::metrics` (partitions, memory, sleeping groups, connectors)
//! while the node runs; the names and the exporter stay in
//! `crate::metrics`, which every part records into.

use std::collections::BTreeMap;
use std::sync::Arc;

use metrics::{counter, gauge};

use crate::connectors::{Launch, Supervisor};
use crate::metrics::{
    CONNECTOR_FAILURES, CONNECTOR_LAG, CONNECTOR_RECORDS_IN, CONNECTOR_RECORDS_OUT,
    CONNECTOR_RESTARTS, CONNECTOR_RUNNING, PARTITION_END_OFFSET, PARTITION_IS_LEADER,
    PARTITION_LEADER_CHANGES, PARTITION_RAFT_LOG_ENTRIES, PARTITION_REPLICA_LAG_ENTRIES,
    PARTITION_START_OFFSET, RAFT_GROUPS_ASLEEP, RESIDENT_MEMORY_BYTES, partition_labels,
};
use crate::services::Services;
use crate::timeouts::METRICS_SAMPLE_INTERVAL;

/// Samples partition and node state into gauges until the node stops.
pub(crate) async fn sample(node: Arc<Services>, connectors: Arc<Supervisor>, launch: Launch) {
    // The leader each replica last saw, to count changes.
    let mut leaders: BTreeMap<(String, u32), Option<u64>> = BTreeMap::new();
    // Connectors that ran here, to mark those gone as not running.
    let mut connectors_seen: std::collections::BTreeSet<String> = Default::default();
    let mut tick = tokio::time::interval(METRICS_SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Some(rss) = resident_bytes() {
            gauge!(RESIDENT_MEMORY_BYTES).set(rss as f64);
        }
        if let Some(q) = node.replicas.quiescence() {
            gauge!(RAFT_GROUPS_ASLEEP).set(q.asleep_count() as f64);
        }
        sample_connectors(&connectors, &launch, &mut connectors_seen).await;
        for partition in node.replicas.all() {
            let labels = partition_labels(&partition.topic, partition.index);
            let (start, end, _) = partition.offsets();
            gauge!(PARTITION_START_OFFSET, &labels).set(start as f64);
            gauge!(PARTITION_END_OFFSET, &labels).set(end as f64);
            let status = partition.group.status();
            gauge!(PARTITION_IS_LEADER, &labels).set(if status.is_leader { 1.0 } else { 0.0 });
            gauge!(PARTITION_RAFT_LOG_ENTRIES, &labels)
                .set(partition.group.log_entries_held() as f64);
            let key = (partition.topic.clone(), partition.index);
            let seen = leaders.entry(key).or_insert(status.leader);
            if *seen != status.leader {
                *seen = status.leader;
                counter!(PARTITION_LEADER_CHANGES, &labels).increment(1);
            }
            // Followers never heard from have no figure yet.
            let lags = partition.group.replication_lag().unwrap_or_default();
            for (replica, behind) in lags.into_iter().filter_map(|(r, b)| Some((r, b?))) {
                let [topic, part] = labels.clone();
                gauge!(
                    PARTITION_REPLICA_LAG_ENTRIES,
                    &[topic, part, ("replica", replica.to_string())]
                )
                .set(behind as f64);
            }
        }
    }
}

/// The connectors this node runs: running, restarts and their process's
/// counts; those that ran here before are marked as not running.
async fn sample_connectors(
    connectors: &Supervisor,
    launch: &Launch,
    seen: &mut std::collections::BTreeSet<String>,
) {
    let here = connectors.here(launch, &[]).await;
    let now: std::collections::BTreeSet<String> = here.iter().map(|r| r.name.clone()).collect();
    for gone in seen.difference(&now) {
        gauge!(CONNECTOR_RUNNING, "connector" => gone.clone()).set(0.0);
    }
    for r in &here {
        let label = [("connector", r.name.clone())];
        gauge!(CONNECTOR_RUNNING, &label).set(if r.pid > 0 { 1.0 } else { 0.0 });
        gauge!(CONNECTOR_RESTARTS, &label).set(r.restarts as f64);
        gauge!(CONNECTOR_RECORDS_IN, &label).set(r.tally.records_in as f64);
        gauge!(CONNECTOR_RECORDS_OUT, &label).set(r.tally.records_out as f64);
        gauge!(CONNECTOR_FAILURES, &label).set(r.tally.failures as f64);
        if let Some(lag) = r.tally.lag {
            gauge!(CONNECTOR_LAG, &label).set(lag as f64);
        }
    }
    seen.extend(now);
}

/// The process's resident set in bytes, from `/proc/self/statm` (Linux).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}
