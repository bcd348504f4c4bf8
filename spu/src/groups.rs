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
//! Before a member starts reading a partition, the coordinator fences the
//! partition at the new generation (`crate::consumers::fence`): from then
//! on the partition refuses commits of older generations, so the member
//! that lost it cannot move its offset.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use sluice_proto::limits::{
    CONSUMER_GROUPS_MAX, GROUP_MEMBERS_MAX, GROUP_SESSION_TIMEOUT_MS_MAX,
    GROUP_SESSION_TIMEOUT_MS_MIN, validate_consumer_name,
};
use sluice_proto::{AssignmentStrategy, GroupAssignment, GroupHeartbeat, WireError};

use crate::services::Services;
use crate::timeouts::CONTROLLER_LEADERSHIP_CHECK_WAIT;

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
    /// Per group, the partitions whose last owner gave them up cleanly
    /// (having committed) or that nobody owned since the group was created,
    /// as seen in this term: the next member starts them without a fence
    /// (see `crate::offsets`). Any other start is fenced first.
    clean: HashMap<String, BTreeSet<u32>>,
}

struct Member {
    last_seen: Instant,
    session: Duration,
    strategy: AssignmentStrategy,
    /// Partitions the member owns but was not told to read yet: their
    /// fence failed (no leader answered). Kept owned (the member not
    /// listing them is no give-up) and fenced again at its next heartbeat.
    pending: BTreeSet<u32>,
}

fn invalid(what: &str, reason: String) -> WireError {
    WireError::InvalidArgument {
        what: what.into(),
        reason,
    }
}

fn not_coordinator(node: &Services) -> WireError {
    WireError::NotLeader {
        node: node.config.id,
        what: "the controller (the consumer-group coordinator)".into(),
        leader: node.controller.leader().filter(|l| *l != node.config.id),
    }
}

/// What the coordinator reads of the metadata for one group, without
/// copying the rest.
struct GroupView {
    partitions: u32,
    record: sluice_controller::GroupRecord,
}

fn group_view(node: &Services, group: &str, topic: &str) -> Result<GroupView, WireError> {
    node.controller.view().with(|md| {
        let partitions = md.topic(topic)?.info.spec.partitions;
        let record = md.groups.get(group).cloned().unwrap_or_default();
        Ok(GroupView { partitions, record })
    })
}

/// The group's offset (and state) in `partition` as an earlier release
/// kept it in the controller's metadata, for a partition without one of
/// its own.
fn legacy_offset(
    node: &Services,
    group: &str,
    topic: &str,
    partition: u32,
) -> Option<(u64, Option<Vec<u8>>)> {
    node.controller.view().with(|md| {
        let o = md
            .consumers
            .get(&(group.to_string(), topic.to_string(), partition))?;
        Some((o.offset, o.state.clone()))
    })
}

impl Coordinator {
    /// Confirms this node leads the controller (a majority says so now, not
    /// only its own belief: a leader cut off from the others must not keep
    /// members reading) and forgets what an earlier term saw.
    async fn lead(&self, node: &Services, live: &mut Live) -> Result<(), WireError> {
        let term = node
            .controller
            .leader_term()
            .ok_or_else(|| not_coordinator(node))?;
        if !node
            .controller
            .confirm_leadership(CONTROLLER_LEADERSHIP_CHECK_WAIT)
            .await
            || node.controller.leader_term() != Some(term)
        {
            return Err(not_coordinator(node));
        }
        if live.term != Some(term) {
            live.groups.clear();
            live.clean.clear();
            live.term = Some(term);
        }
        Ok(())
    }

    /// A member's heartbeat: records it alive, moves partitions on if the
    /// members changed, and says which partitions it may read.
    pub(crate) async fn heartbeat(
        &self,
        node: &Services,
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
        self.lead(node, &mut live).await?;
        let view = group_view(node, &hb.group, &hb.topic)?;
        let record = &view.record;
        if !record.topic.is_empty() && record.topic != hb.topic {
            return Err(invalid(
                "consumer group",
                format!(
                    "group {:?} consumes topic {:?}, not {:?}; a group reads one topic: pick another group name",
                    hb.group, record.topic, hb.topic
                ),
            ));
        }
        let now = Instant::now();
        if !live.groups.contains_key(&hb.group) && live.groups.len() >= CONSUMER_GROUPS_MAX {
            // Groups whose members all went silent are only swept here, at
            // the bound, rather than on every heartbeat.
            live.groups.retain(|_, members| {
                members.retain(|_, m| now.duration_since(m.last_seen) <= m.session);
                !members.is_empty()
            });
            let Live { groups, clean, .. } = &mut *live;
            clean.retain(|g, _| groups.contains_key(g));
        }
        if !live.groups.contains_key(&hb.group) && live.groups.len() >= CONSUMER_GROUPS_MAX {
            return Err(invalid(
                "consumer group",
                format!(
                    "this coordinator already follows {CONSUMER_GROUPS_MAX} groups with live members, \
                     the limit; stop the members of groups no longer needed"
                ),
            ));
        }
        let Live {
            groups,
            clean: clean_sets,
            ..
        } = &mut *live;
        let members = groups
            .entry(hb.group.clone())
            .or_insert_with(|| inherited(record, hb.strategy, now));
        if !members.contains_key(&hb.member) && members.len() >= GROUP_MEMBERS_MAX {
            return Err(invalid(
                "consumer group",
                format!(
                    "group {:?} has {GROUP_MEMBERS_MAX} members, the limit",
                    hb.group
                ),
            ));
        }
        let pending = members
            .get(&hb.member)
            .map(|m| m.pending.clone())
            .unwrap_or_default();
        members.insert(
            hb.member.clone(),
            Member {
                last_seen: now,
                session: Duration::from_millis(hb.session_timeout_ms),
                strategy: hb.strategy,
                pending: pending.clone(),
            },
        );
        members.retain(|_, m| now.duration_since(m.last_seen) <= m.session);
        let alive: Vec<String> = members.keys().cloned().collect();
        // The smallest member id's strategy: any deterministic choice is
        // consistent, as only the coordinator computes assignments.
        let strategy = members.values().next().map_or(hb.strategy, |m| m.strategy);
        let sessions: BTreeMap<String, u64> = members
            .iter()
            .map(|(id, m)| (id.clone(), m.session.as_millis() as u64))
            .collect();

        // A partition the member no longer lists is given up only if the
        // heartbeat answers the current generation; an older one may have
        // been sent before the member was given it.
        let current = hb.generation == record.generation;
        let owned: BTreeSet<u32> = hb.owned.iter().copied().collect();
        // What is clean to hand on: every partition of a group new in the
        // metadata; one this member just gave up; not one whose owner was
        // dropped (it may still be committing).
        let mut clean = clean_sets.remove(&hb.group).unwrap_or_default();
        if record.generation == 0 {
            clean.extend(0..view.partitions);
        }
        for (p, m) in &record.owners {
            if !members.contains_key(m) {
                clean.remove(p);
            } else if *m == hb.member && current && !owned.contains(p) && !pending.contains(p) {
                clean.insert(*p);
            }
        }
        let mut owners = record.owners.clone();
        owners.retain(|p, m| {
            members.contains_key(m)
                && (*m != hb.member || !current || owned.contains(p) || pending.contains(p))
        });
        let target = target(strategy, &alive, view.partitions, &owners);
        for (p, m) in &target {
            owners.entry(*p).or_insert_with(|| m.clone());
        }
        let mut generation = record.generation;
        if owners != record.owners {
            generation += 1;
            let owner_sessions = sessions
                .into_iter()
                .filter(|(id, _)| owners.values().any(|o| o == id))
                .collect();
            node.controller
                .set_group_owners(
                    &hb.group,
                    &hb.topic,
                    generation,
                    owners.clone(),
                    owner_sessions,
                )
                .await?;
            tracing::info!(group = %hb.group, generation, members = alive.len(), "consumer group rebalanced");
        }
        let assigned: Vec<u32> = owners
            .iter()
            .filter(|(p, m)| **m == hb.member && target.get(p) == Some(m))
            .map(|(p, _)| *p)
            .collect();
        let members_alive = alive.len() as u32;
        let starting: Vec<u32> = assigned
            .iter()
            .copied()
            .filter(|p| !owned.contains(p))
            .collect();
        // Starting ones are owned from now on: clean no more.
        let (unfenced, to_fence): (Vec<u32>, Vec<u32>) =
            starting.iter().partition(|p| clean.remove(p));
        clean_sets.insert(hb.group.clone(), clean);
        drop(live);
        // A partition the member starts whose owner was dropped is fenced
        // first, on its leader (not under the coordinator's lock: a leader
        // may take a while): from then on commits of older generations are
        // refused there, and the answer carries the offset every earlier
        // accepted commit left. One handed over cleanly is only read. One
        // whose fence or read fails is held back until the next heartbeat.
        let fences = to_fence.iter().map(|&p| {
            let (group, topic) = (&hb.group, &hb.topic);
            async move {
                let fenced = crate::consumers::fence(node, group, topic, p, generation).await;
                (p, fenced)
            }
        });
        // Bounded well within the member's wait for this answer (a quarter
        // of its session timeout): fences still running then (partitions
        // whose groups were asleep take longer to wake) are dropped, their
        // partitions held back, and fenced again at the next heartbeat; a
        // fence is idempotent, and the one dropped may well have applied.
        let budget = Duration::from_millis(hb.session_timeout_ms / 8);
        let deadline = tokio::time::Instant::now() + budget;
        // Partitions handed over cleanly need no fence, only their offsets:
        // read from their leaders (no Raft write), within the same budget.
        let read = async {
            if unfenced.is_empty() {
                return BTreeMap::new();
            }
            crate::consumers::read_group_offsets(node, &hb.group, &hb.topic, &unfenced).await
        };
        let read = tokio::time::timeout_at(deadline, read);
        let fence_all = async {
            let mut done = BTreeMap::new();
            let mut running: futures::stream::FuturesUnordered<_> = fences.collect();
            while let Ok(Some((p, result))) =
                tokio::time::timeout_at(deadline, futures::StreamExt::next(&mut running)).await
            {
                done.insert(p, result);
            }
            done
        };
        // The fences and the read run at once, under the one budget.
        let (mut fenced, read): (BTreeMap<u32, _>, _) = tokio::join!(fence_all, read);
        // Those read are started (with what was read; legacy offsets are
        // part of it); those whose leader did not answer in time wait.
        if let Ok(read) = read {
            for (p, (offset, state)) in read {
                fenced.insert(p, Ok((offset, state)));
            }
        }
        let mut committed = Vec::new();
        let mut states = Vec::new();
        let mut held_back: BTreeSet<u32> = starting
            .iter()
            .copied()
            .filter(|p| !fenced.contains_key(p))
            .collect();
        for (p, fenced) in fenced {
            match fenced {
                Ok((offset, state)) => {
                    let (offset, state) = match offset {
                        Some(o) => (Some(o), state),
                        None => legacy_offset(node, &hb.group, &hb.topic, p)
                            .map_or((None, None), |(o, s)| (Some(o), s)),
                    };
                    committed.extend(offset.map(|o| (p, o)));
                    states.extend(state.map(|s| (p, serde_bytes::ByteBuf::from(s))));
                }
                Err(e) => {
                    tracing::warn!(
                        group = %hb.group, partition = p, error = %e,
                        "could not fence a partition for the member starting it; held back until its next heartbeat"
                    );
                    held_back.insert(p);
                }
            }
        }
        if !held_back.is_empty() {
            tracing::debug!(
                group = %hb.group, partitions = ?held_back, ?budget,
                "partitions held back: their fences or offsets did not come within the budget"
            );
        }
        let mut live = self.state.lock().await;
        if let Some(m) = live
            .groups
            .get_mut(&hb.group)
            .and_then(|members| members.get_mut(&hb.member))
        {
            m.pending = held_back.clone();
            // Not started after all: still clean for the next try.
            let back = unfenced.iter().filter(|p| held_back.contains(p));
            live.clean.entry(hb.group.clone()).or_default().extend(back);
        }
        drop(live);
        Ok(GroupAssignment {
            generation,
            assigned: assigned
                .into_iter()
                .filter(|p| !held_back.contains(p))
                .collect(),
            members: members_alive,
            committed,
            states,
        })
    }

    /// A member leaves: its partitions are free at once.
    pub(crate) async fn leave(
        &self,
        node: &Services,
        group: &str,
        topic: &str,
        member: &str,
    ) -> Result<(), WireError> {
        let mut live = self.state.lock().await;
        self.lead(node, &mut live).await?;
        if let Some(members) = live.groups.get_mut(group) {
            members.remove(member);
            if members.is_empty() {
                live.groups.remove(group);
            }
        }
        let view = group_view(node, group, topic)?;
        let record = view.record;
        // It committed before leaving: its partitions are clean to hand on
        // (kept only while the group has live members, so that what is
        // kept is bounded by the groups followed).
        if live.groups.contains_key(group) {
            let released = record
                .owners
                .iter()
                .filter(|(_, m)| *m == member)
                .map(|(p, _)| *p);
            live.clean
                .entry(group.to_string())
                .or_default()
                .extend(released);
        } else {
            live.clean.remove(group);
        }
        let mut owners = record.owners.clone();
        owners.retain(|_, m| m != member);
        if owners != record.owners {
            let mut sessions = record.sessions.clone();
            sessions.remove(member);
            node.controller
                .set_group_owners(group, topic, record.generation + 1, owners, sessions)
                .await?;
            tracing::info!(group, "consumer group member left");
        }
        Ok(())
    }

    /// Before a group is deleted: drops the owners whose session ran out,
    /// so a group whose members all died can go. A no-op where this node
    /// does not lead the controller (the request is passed to the leader).
    pub(crate) async fn drop_dead_owners(
        &self,
        node: &Services,
        group: &str,
    ) -> Result<(), WireError> {
        let mut live = self.state.lock().await;
        if self.lead(node, &mut live).await.is_err() {
            return Ok(());
        }
        let Some(record) = node
            .controller
            .view()
            .with(|md| md.groups.get(group).cloned())
        else {
            return Ok(());
        };
        let now = Instant::now();
        let Live {
            groups,
            clean: clean_sets,
            ..
        } = &mut *live;
        let members = groups
            .entry(group.to_string())
            .or_insert_with(|| inherited(&record, AssignmentStrategy::default(), now));
        members.retain(|_, m| now.duration_since(m.last_seen) <= m.session);
        let mut owners = record.owners.clone();
        owners.retain(|_, m| members.contains_key(m));
        if let Some(clean) = clean_sets.get_mut(group) {
            clean.retain(|p| owners.contains_key(p) || !record.owners.contains_key(p));
        }
        if members.is_empty() {
            groups.remove(group);
            clean_sets.remove(group);
        }
        if owners != record.owners {
            let mut sessions = record.sessions.clone();
            sessions.retain(|id, _| owners.values().any(|o| o == id));
            node.controller
                .set_group_owners(
                    group,
                    &record.topic,
                    record.generation + 1,
                    owners,
                    sessions,
                )
                .await?;
        }
        Ok(())
    }
}

/// The members a coordinator new to a group starts with: its owners, each
/// counted as just seen and given the session timeout it joined with.
fn inherited(
    record: &sluice_controller::GroupRecord,
    strategy: AssignmentStrategy,
    now: Instant,
) -> BTreeMap<String, Member> {
    record
        .owners
        .values()
        .map(|m| {
            let ms = record
                .sessions
                .get(m)
                .copied()
                .unwrap_or(GROUP_SESSION_TIMEOUT_MS_MAX);
            let member = Member {
                last_seen: now,
                session: Duration::from_millis(ms),
                strategy,
                pending: BTreeSet::new(),
            };
            (m.clone(), member)
        })
        .collect()
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
