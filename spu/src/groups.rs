//! The consumer-group coordinator, run by the controller's leader.
//!
//! Who owns which partition is durable (the controller's metadata, one
//! generation per change, see `Command::SetGroupOwners`); whether members
//! are alive is not: the coordinator keeps each member's last heartbeat in
//! memory, so heartbeats cost no Raft write, and a new controller leader
//! starts by counting every owner as just seen.
//!
//! A partition changes hands in two steps, so that one member at most reads
//! it at any time. The coordinator stops giving it to its owner; the owner
//! stops reading it, commits its position, and says so in its next
//! heartbeat; only then is it given to the next member. An owner that stops
//! heartbeating loses its partitions after its session timeout; the member
//! itself stops reading once it has had no answer for as long (its last
//! answer was sent before the coordinator last heard it, so it stops first).
//! Its commits are refused by the metadata from the moment it lost them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use sluice_proto::limits::{
    CONSUMER_GROUPS_MAX, GROUP_MEMBERS_MAX, GROUP_SESSION_TIMEOUT_MS_MAX,
    GROUP_SESSION_TIMEOUT_MS_MIN, validate_consumer_name,
};
use sluice_proto::{AssignmentStrategy, GroupAssignment, GroupHeartbeat, WireError};

use crate::node::Shared;

/// What the coordinator knows of the groups' members.
#[derive(Default)]
pub(crate) struct Coordinator {
    /// Held across the Raft write of a heartbeat, so two heartbeats never
    /// compute the next generation from the same one.
    state: tokio::sync::Mutex<Live>,
}

#[derive(Default)]
struct Live {
    /// The controller term this was gathered in: a coordinator that lost
    /// and regained leadership forgets what it saw before.
    term: Option<u64>,
    groups: HashMap<String, BTreeMap<String, Member>>,
}

struct Member {
    last_seen: Instant,
    session: Duration,
    strategy: AssignmentStrategy,
}

fn invalid(what: &str, reason: String) -> WireError {
    WireError::InvalidArgument {
        what: what.into(),
        reason,
    }
}

fn not_coordinator(node: &Shared) -> WireError {
    WireError::NotLeader {
        node: node.config.id,
        what: "the controller (the consumer-group coordinator)".into(),
        leader: node.controller.leader().filter(|l| *l != node.config.id),
    }
}

impl Coordinator {
    /// A member's heartbeat: records it alive, moves partitions on if the
    /// members changed, and says which partitions it may read.
    pub(crate) async fn heartbeat(
        &self,
        node: &Shared,
        hb: GroupHeartbeat,
    ) -> Result<GroupAssignment, WireError> {
        validate_consumer_name(&hb.group).map_err(|r| invalid("consumer group name", r))?;
        if !(GROUP_SESSION_TIMEOUT_MS_MIN..=GROUP_SESSION_TIMEOUT_MS_MAX)
            .contains(&hb.session_timeout_ms)
        {
            return Err(invalid(
                "session timeout",
                format!(
                    "{} ms; it must be {GROUP_SESSION_TIMEOUT_MS_MIN} to {GROUP_SESSION_TIMEOUT_MS_MAX} ms",
                    hb.session_timeout_ms
                ),
            ));
        }
        if hb.member.is_empty() || hb.member.len() > 64 {
            return Err(invalid("member id", "it must be 1 to 64 bytes".into()));
        }
        let mut live = self.state.lock().await;
        let term = node
            .controller
            .leader_term()
            .ok_or_else(|| not_coordinator(node))?;
        let md = node.metadata();
        let partitions = md.topic(&hb.topic)?.info.spec.partitions;
        let record = md.groups.get(&hb.group).cloned().unwrap_or_default();
        if !record.topic.is_empty() && record.topic != hb.topic {
            return Err(invalid(
                "consumer group",
                format!(
                    "group {:?} consumes topic {:?}, not {:?}; a group reads one topic: pick another group name",
                    hb.group, record.topic, hb.topic
                ),
            ));
        }
        if live.term != Some(term) {
            live.groups.clear();
            live.term = Some(term);
        }
        let now = Instant::now();
        let session = Duration::from_millis(hb.session_timeout_ms);
        if !live.groups.contains_key(&hb.group) && live.groups.len() >= CONSUMER_GROUPS_MAX {
            return Err(invalid(
                "consumer group",
                format!("the coordinator tracks {CONSUMER_GROUPS_MAX} groups, the limit"),
            ));
        }
        let members = live.groups.entry(hb.group.clone()).or_insert_with(|| {
            // New to this coordinator: every owner counts as just seen.
            record
                .owners
                .values()
                .map(|m| {
                    let member = Member {
                        last_seen: now,
                        session,
                        strategy: hb.strategy,
                    };
                    (m.clone(), member)
                })
                .collect()
        });
        if !members.contains_key(&hb.member) && members.len() >= GROUP_MEMBERS_MAX {
            return Err(invalid(
                "consumer group",
                format!(
                    "group {:?} has {GROUP_MEMBERS_MAX} members, the limit",
                    hb.group
                ),
            ));
        }
        members.insert(
            hb.member.clone(),
            Member {
                last_seen: now,
                session,
                strategy: hb.strategy,
            },
        );
        members.retain(|_, m| now.duration_since(m.last_seen) <= m.session);
        let alive: Vec<String> = members.keys().cloned().collect();
        // The smallest member id's strategy: every member computes nothing,
        // so any deterministic choice is consistent.
        let strategy = members.values().next().map_or(hb.strategy, |m| m.strategy);

        let owned: BTreeSet<u32> = hb.owned.iter().copied().collect();
        let mut owners = record.owners.clone();
        // Partitions of members gone, and those this member stopped reading.
        owners.retain(|p, m| members.contains_key(m) && (*m != hb.member || owned.contains(p)));
        let target = target(strategy, &alive, partitions, &owners);
        for (p, m) in &target {
            owners.entry(*p).or_insert_with(|| m.clone());
        }
        let mut generation = record.generation;
        if owners != record.owners {
            generation += 1;
            node.controller
                .set_group_owners(&hb.group, &hb.topic, generation, owners.clone())
                .await?;
            tracing::info!(group = %hb.group, generation, ?owners, "consumer group rebalanced");
        }
        let assigned = owners
            .iter()
            .filter(|(p, m)| **m == hb.member && target.get(p) == Some(m))
            .map(|(p, _)| *p)
            .collect();
        Ok(GroupAssignment {
            generation,
            assigned,
            members: alive,
        })
    }

    /// A member leaves: its partitions are free at once.
    pub(crate) async fn leave(
        &self,
        node: &Shared,
        group: &str,
        member: &str,
    ) -> Result<(), WireError> {
        let mut live = self.state.lock().await;
        node.controller
            .leader_term()
            .ok_or_else(|| not_coordinator(node))?;
        if let Some(members) = live.groups.get_mut(group) {
            members.remove(member);
        }
        let md = node.metadata();
        let Some(record) = md.groups.get(group) else {
            return Ok(());
        };
        let mut owners = record.owners.clone();
        owners.retain(|_, m| m != member);
        if owners != record.owners {
            node.controller
                .set_group_owners(group, &record.topic, record.generation + 1, owners)
                .await?;
            tracing::info!(group, member, "consumer group member left");
        }
        Ok(())
    }
}

/// Which member each of `partitions` should go to, among `members` (sorted).
pub(crate) fn target(
    strategy: AssignmentStrategy,
    members: &[String],
    partitions: u32,
    current: &BTreeMap<u32, String>,
) -> BTreeMap<u32, String> {
    let m = members.len() as u32;
    if m == 0 {
        return BTreeMap::new();
    }
    match strategy {
        AssignmentStrategy::RoundRobin => (0..partitions)
            .map(|p| (p, members[(p % m) as usize].clone()))
            .collect(),
        AssignmentStrategy::Range => {
            let (base, extra) = (partitions / m, partitions % m);
            let mut out = BTreeMap::new();
            let mut p = 0;
            for (i, member) in members.iter().enumerate() {
                let share = base + u32::from((i as u32) < extra);
                for _ in 0..share {
                    out.insert(p, member.clone());
                    p += 1;
                }
            }
            out
        }
        AssignmentStrategy::Sticky => {
            let (base, mut extra) = ((partitions / m) as usize, (partitions % m) as usize);
            let mut out = BTreeMap::new();
            let mut count: BTreeMap<&String, usize> = members.iter().map(|x| (x, 0)).collect();
            // Each member keeps what it owns, up to its fair share.
            for member in members {
                let own: Vec<u32> = current
                    .iter()
                    .filter(|(p, o)| *o == member && **p < partitions)
                    .map(|(p, _)| *p)
                    .collect();
                let mut share = base;
                if own.len() > base && extra > 0 {
                    share += 1;
                    extra -= 1;
                }
                for p in own.into_iter().take(share) {
                    out.insert(p, member.clone());
                    *count.get_mut(member).expect("every member is counted") += 1;
                }
            }
            // The rest go, one by one, to the member with the fewest.
            for p in 0..partitions {
                if out.contains_key(&p) {
                    continue;
                }
                let (member, n) = count
                    .iter_mut()
                    .min_by_key(|(id, n)| (**n, String::clone(id)))
                    .expect("members is not empty");
                *n += 1;
                out.insert(p, (*member).clone());
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("m{i}")).collect()
    }

    fn shares(t: &BTreeMap<u32, String>) -> BTreeMap<String, Vec<u32>> {
        let mut out: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for (p, m) in t {
            out.entry(m.clone()).or_default().push(*p);
        }
        out
    }

    #[test]
    fn range_and_round_robin_spread_evenly() {
        let range = shares(&target(
            AssignmentStrategy::Range,
            &ids(3),
            7,
            &BTreeMap::new(),
        ));
        assert_eq!(range["m0"], vec![0, 1, 2]);
        assert_eq!(range["m1"], vec![3, 4]);
        assert_eq!(range["m2"], vec![5, 6]);
        let rr = shares(&target(
            AssignmentStrategy::RoundRobin,
            &ids(3),
            7,
            &BTreeMap::new(),
        ));
        assert_eq!(rr["m0"], vec![0, 3, 6]);
        assert_eq!(rr["m2"], vec![2, 5]);
        assert!(target(AssignmentStrategy::Range, &[], 4, &BTreeMap::new()).is_empty());
        // More members than partitions: some get none.
        assert_eq!(
            target(AssignmentStrategy::Range, &ids(5), 2, &BTreeMap::new()).len(),
            2
        );
    }

    #[test]
    fn sticky_moves_only_the_excess() {
        // One member read all six; two join: it keeps two, the others get two each.
        let all: BTreeMap<u32, String> = (0..6).map(|p| (p, "m1".to_string())).collect();
        let t = target(AssignmentStrategy::Sticky, &ids(3), 6, &all);
        let s = shares(&t);
        assert_eq!(s["m1"], vec![0, 1]);
        assert_eq!(s["m0"].len(), 2);
        assert_eq!(s["m2"].len(), 2);
        // A member leaves: its partitions go to the others, nobody else moves.
        let mut after = t.clone();
        after.retain(|_, m| m != "m2");
        let t2 = target(
            AssignmentStrategy::Sticky,
            &["m0".into(), "m1".into()],
            6,
            &after,
        );
        for (p, m) in &after {
            assert_eq!(t2.get(p), Some(m), "partition {p} moved");
        }
        let s2 = shares(&t2);
        assert_eq!((s2["m0"].len(), s2["m1"].len()), (3, 3));
        // Uneven: 7 over 3, at most one apart.
        let t3 = target(AssignmentStrategy::Sticky, &ids(3), 7, &all);
        let sizes: Vec<usize> = shares(&t3).values().map(Vec::len).collect();
        assert!(
            sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
            "{sizes:?}"
        );
    }
}
