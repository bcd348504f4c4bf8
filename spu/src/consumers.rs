//! Committed consumer offsets as the nodes serve them: each partition's
//! leader stores commits in the partition's Raft group (`crate::offsets`
//! holds the rules); listing and deleting ask every node for the
//! partitions it leads.
//!
//! Offsets committed by releases that kept them in the controller's
//! metadata are still read from there (`Metadata::consumers`) for a
//! partition that has none of its own, and deleted with the rest; nothing
//! new is written there.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use sluice_proto::limits::{CONSUMER_STATE_BYTES_MAX, validate_consumer_name};
use sluice_proto::{
    ConsumerOffset, LedPartitionOffsets, OffsetCommit, Request, Response, WireError,
};

use crate::offsets::CommitEntry;
use crate::partition::{AppendOutcome, Partition, PartitionCommand, decode, encode};
use crate::services::Services;
use crate::timeouts::{OFFSETS_PEER_WAIT, PARTITION_LEADERSHIP_CHECK_WAIT};

/// How many times a request for a partition's leader follows a redirect.
const REDIRECTS_MAX: usize = 3;

fn invalid(what: &str, reason: String) -> WireError {
    WireError::InvalidArgument {
        what: what.into(),
        reason,
    }
}

/// Stores `commit` in its partition, if this node leads it (else
/// `NotLeader` names the leader). `generation` is a group member's (from
/// [`Request::CommitOffsetAt`]); a member's commit without one (an older
/// client) is stamped with the group's generation in this node's metadata
/// if the member owns the partition there.
pub(crate) async fn commit_offset(
    node: &Services,
    commit: OffsetCommit,
    generation: Option<u64>,
) -> Result<(), WireError> {
    validate_consumer_name(&commit.consumer).map_err(|r| invalid("consumer name", r))?;
    if let Some(state) = &commit.state
        && state.len() > CONSUMER_STATE_BYTES_MAX
    {
        return Err(invalid(
            "offset commit",
            format!(
                "its SmartModule state is {} bytes; at most {CONSUMER_STATE_BYTES_MAX} are kept with an offset",
                state.len()
            ),
        ));
    }
    let member = match (commit.member.clone(), generation) {
        (Some(member), Some(generation)) => {
            // This node's copy of the group, if it is at least as new as the
            // member's generation, knows whether the member still owns the
            // partition (an older copy cannot tell; the partition's own
            // generation check applies either way).
            let moved_on = node.controller.view().with(|md| {
                let g = md.groups.get(&commit.consumer)?;
                (g.generation >= generation && g.owners.get(&commit.partition) != Some(&member))
                    .then_some(g.generation)
            });
            if let Some(now) = moved_on {
                return Err(WireError::FencedMember {
                    group: commit.consumer.clone(),
                    member,
                    reason: format!(
                        "it does not own partition {} in generation {now} (its commit is of generation {generation})",
                        commit.partition
                    ),
                });
            }
            Some((member, generation))
        }
        (Some(member), None) => {
            let owned_in = node.controller.view().with(|md| {
                let g = md.groups.get(&commit.consumer)?;
                (g.owners.get(&commit.partition) == Some(&member)).then_some(g.generation)
            });
            let Some(generation) = owned_in else {
                return Err(WireError::FencedMember {
                    group: commit.consumer.clone(),
                    member,
                    reason: format!("it does not own partition {}", commit.partition),
                });
            };
            Some((member, generation))
        }
        (None, _) => {
            // A group reads one topic; its name is not a plain consumer's
            // on another (checked against this node's copy: a group made a
            // moment ago elsewhere may pass, which only mixes names).
            let group_topic = node
                .controller
                .view()
                .with(|md| md.groups.get(&commit.consumer).map(|g| g.topic.clone()));
            if let Some(topic) = group_topic.filter(|t| *t != commit.topic) {
                return Err(invalid(
                    "offset commit",
                    format!(
                        "{:?} is a consumer group on topic {topic:?}; pick another consumer name",
                        commit.consumer
                    ),
                ));
            }
            None
        }
    };
    let partition = local_leader(node, &commit.topic, commit.partition)?;
    let command = PartitionCommand::CommitOffset(CommitEntry {
        consumer: commit.consumer,
        offset: commit.offset,
        session: commit.session,
        sequence: commit.sequence,
        state: commit.state.map(serde_bytes::ByteBuf::from),
        member,
        committed_ms: sluice_proto::now_ms(),
    });
    match propose(&partition, command).await? {
        AppendOutcome::OffsetCommitted => Ok(()),
        AppendOutcome::Refused { error } => Err(error),
        other => Err(unexpected(&partition, &other)),
    }
}

/// Fences group `consumer` at `generation` in `topic`/`partition` (see
/// `crate::offsets`) on the partition's leader, wherever it is; returns the
/// group's committed offset and state there.
pub(crate) async fn fence(
    node: &Services,
    consumer: &str,
    topic: &str,
    partition: u32,
    generation: u64,
) -> Result<(Option<u64>, Option<Vec<u8>>), WireError> {
    let request = Request::FenceConsumer {
        consumer: consumer.to_string(),
        topic: topic.to_string(),
        partition,
        generation,
    };
    let mut target = node.config.id;
    for _ in 0..=REDIRECTS_MAX {
        let answer = if target == node.config.id {
            fence_here(node, consumer, topic, partition, generation).await
        } else {
            ask(node, target, &request).await.and_then(|r| match r {
                Response::ConsumerFenced { offset, state } => {
                    Ok((offset, state.map(|s| s.into_vec())))
                }
                other => Err(WireError::Unavailable {
                    what: format!("partition {topic}/{partition}"),
                    reason: format!("node {target} answered a fence with {}", name_of(&other)),
                }),
            })
        };
        match answer {
            Err(WireError::NotLeader {
                leader: Some(next), ..
            }) if next != target => target = next,
            other => return other,
        }
    }
    Err(WireError::Unavailable {
        what: format!("partition {topic}/{partition}"),
        reason: "its leader moved while the consumer group was being fenced".into(),
    })
}

/// [`fence`] on this node's replica, which must lead.
pub(crate) async fn fence_here(
    node: &Services,
    consumer: &str,
    topic: &str,
    partition: u32,
    generation: u64,
) -> Result<(Option<u64>, Option<Vec<u8>>), WireError> {
    let p = local_leader(node, topic, partition)?;
    let command = PartitionCommand::FenceConsumer {
        consumer: consumer.to_string(),
        generation,
    };
    match propose(&p, command).await? {
        AppendOutcome::Fenced { offset, state } => Ok((offset, state.map(|s| s.into_vec()))),
        AppendOutcome::Refused { error } => Err(error),
        other => Err(unexpected(&p, &other)),
    }
}

/// This node's replica of `topic`/`partition` if it leads it; else
/// `NotLeader` naming the leader as far as this node knows.
fn local_leader(node: &Services, topic: &str, partition: u32) -> Result<Partition, WireError> {
    let p = node
        .controller
        .view()
        .with(|md| node.replicas.get(md, topic, partition))?;
    let status = p.group.status();
    if !status.is_leader {
        return Err(WireError::NotLeader {
            node: node.config.id,
            what: format!("partition {topic}/{partition}"),
            leader: status.leader.filter(|l| *l != node.config.id),
        });
    }
    Ok(p)
}

async fn propose(p: &Partition, command: PartitionCommand) -> Result<AppendOutcome, WireError> {
    let what = || format!("partition {}/{}", p.topic, p.index);
    let answer = p
        .group
        .write(encode(&command))
        .await
        .map_err(|e| e.into_wire(what()))?;
    decode::<AppendOutcome>(&answer).map_err(|reason| WireError::Storage {
        what: what(),
        reason,
    })
}

fn unexpected(p: &Partition, outcome: &AppendOutcome) -> WireError {
    WireError::Storage {
        what: format!("partition {}/{}", p.topic, p.index),
        reason: format!("a consumer command was answered with {outcome:?}"),
    }
}

fn name_of(response: &Response) -> String {
    match response {
        Response::Error(e) => e.to_string(),
        other => format!("{other:?}").chars().take(80).collect(),
    }
}

/// Sends `request` to node `peer` and returns its answer (an error answer
/// as the error).
async fn ask(node: &Services, peer: u64, request: &Request) -> Result<Response, WireError> {
    let addr = node
        .controller
        .view()
        .with(|md| md.nodes.get(&peer).map(|n| n.addr.clone()))
        .ok_or_else(|| WireError::Unavailable {
            what: format!("node {peer}"),
            reason: "it has no known address".into(),
        })?;
    match node.peers.request(&addr, request, OFFSETS_PEER_WAIT).await {
        Ok(Response::Error(e)) => Err(e),
        Ok(response) => Ok(response),
        Err(reason) => Err(WireError::Unavailable {
            what: format!("node {peer}"),
            reason: format!("cannot reach it at {addr}: {reason}"),
        }),
    }
}

/// The partitions this node leads among `topic` (or all), with their ids.
fn led_partitions(node: &Services, topic: Option<&str>) -> Vec<Partition> {
    node.replicas
        .all()
        .into_iter()
        .filter(|p| topic.is_none_or(|t| t == p.topic))
        .filter(|p| {
            let s = p.group.status();
            s.is_leader && s.stopped.is_none()
        })
        .collect()
}

/// [`Request::LeaderConsumers`] on this node: the partitions it leads,
/// each read only after a majority confirmed the leadership and everything
/// committed before was applied (a read index), so a deposed leader or one
/// new to its term never answers with offsets older than a commit that was
/// acknowledged. (A coordinator starts a member from such a read.)
pub(crate) async fn leader_consumers(
    node: &Services,
    consumer: Option<&str>,
    topic: Option<&str>,
) -> Vec<LedPartitionOffsets> {
    let led = led_partitions(node, topic);
    let checks = led
        .iter()
        .map(|p| p.group.confirm_leadership(PARTITION_LEADERSHIP_CHECK_WAIT));
    let confirmed = futures::future::join_all(checks).await;
    led.into_iter()
        .zip(confirmed)
        .filter(|(_, confirmed)| *confirmed)
        .map(|(p, _)| {
            let status = p.group.status();
            let view = p.consumers.read().unwrap_or_else(|e| e.into_inner());
            let offsets = view
                .committed(consumer)
                .map(|(name, c)| ConsumerOffset {
                    consumer: name.to_string(),
                    topic: p.topic.clone(),
                    partition: p.index,
                    offset: Some(c.offset),
                    committed_ms: c.committed_ms,
                    state: c.state.as_ref().map(|s| s.to_vec()),
                    owner: None,
                })
                .collect();
            LedPartitionOffsets {
                topic: p.topic.clone(),
                partition: p.index,
                term: status.term,
                applied_index: status.last_applied_index.unwrap_or(0),
                offsets,
            }
        })
        .collect()
}

/// [`Request::ForgetConsumer`] on this node: the partitions it leads in
/// scope, and in how many of them `consumer` had offsets.
pub(crate) async fn forget_here(
    node: &Services,
    consumer: &str,
    topic: Option<&str>,
) -> Result<(Vec<(String, u32)>, u32), WireError> {
    let mut covered = Vec::new();
    let mut forgotten = 0;
    for p in led_partitions(node, topic) {
        let known = p
            .consumers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .entry(consumer)
            .is_some();
        if known {
            let command = PartitionCommand::ForgetConsumer {
                consumer: consumer.to_string(),
            };
            match propose(&p, command).await? {
                AppendOutcome::Forgotten { found } => forgotten += u32::from(found),
                other => return Err(unexpected(&p, &other)),
            }
        }
        covered.push((p.topic.clone(), p.index));
    }
    Ok((covered, forgotten))
}

/// The partitions in scope (of `topic`, or of every topic).
fn partitions_in_scope(
    node: &Services,
    topic: Option<&str>,
) -> Result<BTreeSet<(String, u32)>, WireError> {
    node.controller.view().with(|md| {
        if let Some(t) = topic {
            md.topic(t)?;
        }
        Ok(md
            .topics
            .iter()
            .filter(|(name, _)| topic.is_none_or(|t| t == name.as_str()))
            .flat_map(|(name, r)| (0..r.info.spec.partitions).map(move |p| (name.clone(), p)))
            .collect())
    })
}

/// Asks every other registered node with `request`, all at once; answers
/// come as they arrive, so a caller that has heard enough stops waiting
/// (a dead node answers only when its ask times out).
fn ask_every_node<'a>(
    node: &'a Services,
    request: &'a Request,
) -> FuturesUnordered<impl Future<Output = (u64, Result<Response, WireError>)> + 'a> {
    let peers: Vec<u64> = node.controller.view().with(|md| {
        md.nodes
            .keys()
            .copied()
            .filter(|id| *id != node.config.id)
            .collect()
    });
    peers
        .into_iter()
        .map(|peer| async move { (peer, ask(node, peer, request).await) })
        .collect()
}

fn uncovered(
    scope: &BTreeSet<(String, u32)>,
    covered: &BTreeSet<(String, u32)>,
    silent: &[String],
) -> Result<(), WireError> {
    let missing: Vec<String> = scope
        .difference(covered)
        .take(8)
        .map(|(t, p)| format!("{t}/{p}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(WireError::Unavailable {
        what: "consumer offsets".into(),
        reason: format!(
            "no leader answered for partitions {} (of {} without one){}; retry once they have leaders",
            missing.join(", "),
            scope.difference(covered).count(),
            if silent.is_empty() {
                String::new()
            } else {
                format!("; not answering: {}", silent.join("; "))
            }
        ),
    })
}

/// Each partition of `scope` as its leader answers for it (offsets of
/// `consumer`, or of all, on `topic`, or on all), and what the nodes that
/// did not answer said. Each answer was confirmed by a majority when read,
/// so once every partition in scope has one, the nodes not heard from yet
/// (a dead one answers only when its ask times out) are not waited for.
async fn gather(
    node: &Services,
    consumer: Option<&str>,
    topic: Option<&str>,
    scope: &BTreeSet<(String, u32)>,
) -> (BTreeMap<(String, u32), LedPartitionOffsets>, Vec<String>) {
    let request = Request::LeaderConsumers {
        consumer: consumer.map(str::to_string),
        topic: topic.map(str::to_string),
    };
    // Per partition, the answer of the newest leader.
    let mut best: BTreeMap<(String, u32), LedPartitionOffsets> = BTreeMap::new();
    let take = |best: &mut BTreeMap<_, LedPartitionOffsets>, led: Vec<LedPartitionOffsets>| {
        for p in led {
            let key = (p.topic.clone(), p.partition);
            let newer = best
                .get(&key)
                .is_none_or(|b| (p.term, p.applied_index) > (b.term, b.applied_index));
            if newer {
                best.insert(key, p);
            }
        }
    };
    take(&mut best, leader_consumers(node, consumer, topic).await);
    let mut silent = Vec::new();
    let mut asks = ask_every_node(node, &request);
    while !scope.iter().all(|k| best.contains_key(k)) {
        let Some((peer, answer)) = asks.next().await else {
            break;
        };
        match answer {
            Ok(Response::LeaderConsumers(led)) => take(&mut best, led),
            Ok(other) => silent.push(format!("node {peer} answered {}", name_of(&other))),
            Err(e) => silent.push(e.to_string()),
        }
    }
    (best, silent)
}

/// The committed offset and state of `group` in each of `partitions` of
/// `topic` whose leader answered (a partition left out has none that did):
/// a read, confirmed by each leader's majority, for a member starting a
/// partition handed over cleanly (`crate::groups`, which falls back to
/// what an earlier release kept in the metadata, as it does for fences).
pub(crate) async fn read_group_offsets(
    node: &Services,
    group: &str,
    topic: &str,
    partitions: &[u32],
) -> BTreeMap<u32, (Option<u64>, Option<Vec<u8>>)> {
    let scope: BTreeSet<(String, u32)> =
        partitions.iter().map(|p| (topic.to_string(), *p)).collect();
    let (best, _) = gather(node, Some(group), Some(topic), &scope).await;
    partitions
        .iter()
        .filter_map(|p| {
            let led = best.get(&(topic.to_string(), *p))?;
            let own = led
                .offsets
                .iter()
                .find(|o| o.consumer == group)
                .map_or((None, None), |o| (o.offset, o.state.clone()));
            Some((*p, own))
        })
        .collect()
}

/// [`Request::ListConsumers`]: the committed offsets of `consumer` (or of
/// all) on `topic` (or on all), from the partitions' leaders, with a row
/// (and no offset) for each partition a group member owns before its first
/// commit there. States only for one consumer on one topic; owners by the
/// first 8 characters of their id (the whole id is the member's secret).
pub(crate) async fn list(
    node: &Services,
    consumer: Option<&str>,
    topic: Option<&str>,
) -> Result<Vec<ConsumerOffset>, WireError> {
    let scope = partitions_in_scope(node, topic)?;
    let (best, silent) = gather(node, consumer, topic, &scope).await;
    let covered: BTreeSet<(String, u32)> = best.keys().cloned().collect();
    uncovered(&scope, &covered, &silent)?;
    let with_state = consumer.is_some() && topic.is_some();
    let mut rows: BTreeMap<(String, String, u32), ConsumerOffset> = BTreeMap::new();
    for p in best.into_values() {
        for mut o in p.offsets {
            if !with_state {
                o.state = None;
            }
            rows.insert((o.consumer.clone(), o.topic.clone(), o.partition), o);
        }
    }
    // The metadata adds offsets earlier releases committed there (where a
    // partition has none of its own) and each group partition's owner.
    node.controller.view().with(|md| {
        for row in md.consumer_offsets(consumer, topic) {
            if !scope.contains(&(row.topic.clone(), row.partition)) {
                continue;
            }
            let key = (row.consumer.clone(), row.topic.clone(), row.partition);
            match rows.entry(key) {
                std::collections::btree_map::Entry::Occupied(mut own) => {
                    own.get_mut().owner = row.owner
                }
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(row);
                }
            }
        }
    });
    Ok(rows.into_values().collect())
}

/// Forgets `consumer`'s offsets in every partition of `topic` (or of every
/// topic); how many partitions held some. Refused, forgetting nothing,
/// while a partition in scope has no leader that answers.
pub(crate) async fn forget(
    node: &Services,
    consumer: &str,
    topic: Option<&str>,
) -> Result<u32, WireError> {
    let scope = partitions_in_scope(node, topic)?;
    // Checked first, so a delete that cannot reach every partition changes
    // none (a partition without a leader now would keep the offsets).
    let (led, silent) = gather(node, Some(consumer), topic, &scope).await;
    let covered: BTreeSet<(String, u32)> = led.into_keys().collect();
    uncovered(&scope, &covered, &silent)?;
    let request = Request::ForgetConsumer {
        consumer: consumer.to_string(),
        topic: topic.map(str::to_string),
    };
    let (here, mut forgotten) = forget_here(node, consumer, topic).await?;
    let mut covered: BTreeSet<(String, u32)> = here.into_iter().collect();
    let mut silent = Vec::new();
    let mut asks = ask_every_node(node, &request);
    while !scope.is_subset(&covered) {
        let Some((peer, answer)) = asks.next().await else {
            break;
        };
        match answer {
            Ok(Response::ConsumerForgotten {
                partitions,
                forgotten: n,
            }) => {
                covered.extend(partitions);
                forgotten += n;
            }
            Ok(other) => silent.push(format!("node {peer} answered {}", name_of(&other))),
            Err(e) => silent.push(e.to_string()),
        }
    }
    // Leaders moved between the check and the forget: some partitions may
    // have kept the consumer; say so (a retry finishes the job).
    uncovered(&scope, &covered, &silent)?;
    Ok(forgotten)
}
