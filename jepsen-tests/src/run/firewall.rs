//! Partitions and packet loss with nftables, on the input hook of the run's namespace (rules on
//! the output hook make `sendto` fail with EPERM, which no real network does).
//!
//! A severed link `a -> b` is one rule, `ip saddr A ip daddr B counter drop`:
//! a node sends to its peers from its own address (it binds its client socket
//! to its listen address), so its source address names it. Clients of the
//! suite connect from 127.0.0.1, which no rule names: partitions are between
//! nodes. Packet loss names a node's address alone, so it hits its clients'
//! packets too. Every rule counts the packets it drops, so a heal can tell whether
//! the partition took effect.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::history::NodeId;

const TABLE: &str = "sluice_jt";

fn nft(script: &str) -> anyhow::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run nft (install the nftables package)")?;
    child
        .stdin
        .take()
        .context("nft stdin")?
        .write_all(script.as_bytes())
        .context("cannot write to nft")?;
    let out = child.wait_with_output().context("nft")?;
    if !out.status.success() {
        bail!(
            "nft failed: {}\nscript:\n{script}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Creates the run's table and input chain (in the current namespace).
pub fn init() -> anyhow::Result<()> {
    nft(&format!(
        "add table ip {TABLE}\n\
         add chain ip {TABLE} input {{ type filter hook input priority 0; policy accept; }}\n"
    ))
}

/// Heals every partition: flushes the chain.
pub fn heal() -> anyhow::Result<()> {
    nft(&format!("flush chain ip {TABLE} input\n"))
}

/// The rules that sever `links` (`(from, to)`), given each node's address.
pub fn rules(links: &[(NodeId, NodeId)], ip: impl Fn(NodeId) -> Ipv4Addr) -> Vec<String> {
    links
        .iter()
        .map(|(a, b)| format!("ip saddr {} ip daddr {} counter drop", ip(*a), ip(*b)))
        .collect()
}

/// The rules that drop `percent`% of the packets into and out of each of
/// `nodes` at random, given each node's address: from and to its peers and
/// clients alike (a client's packets to a node name the node as `daddr`, the
/// node's answers name it as `saddr`). A packet between two such nodes meets
/// two draws, so it is dropped a little more often.
pub fn loss_rules(nodes: &[NodeId], percent: u64, ip: impl Fn(NodeId) -> Ipv4Addr) -> Vec<String> {
    nodes
        .iter()
        .flat_map(|n| {
            ["saddr", "daddr"].map(|side| {
                format!(
                    "ip {side} {} numgen random mod 100 < {percent} counter drop",
                    ip(*n)
                )
            })
        })
        .collect()
}

/// Packets dropped by the chain's rules since they were applied (their counters).
pub fn dropped() -> anyhow::Result<u64> {
    let out = Command::new("nft")
        .args(["list", "chain", "ip", TABLE, "input"])
        .output()
        .context("cannot run nft")?;
    if !out.status.success() {
        bail!(
            "nft list failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(count_packets(&String::from_utf8_lossy(&out.stdout)))
}

/// The sum of `counter packets N` in an `nft list` output.
fn count_packets(listing: &str) -> u64 {
    let words: Vec<&str> = listing.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "packets")
        .filter_map(|w| w[1].parse::<u64>().ok())
        .sum()
}

/// Replaces the chain's rules with `rules`, atomically.
pub fn apply(rules: &[String]) -> anyhow::Result<()> {
    let mut script = format!("flush chain ip {TABLE} input\n");
    for r in rules {
        script.push_str(&format!("add rule ip {TABLE} input {r}\n"));
    }
    nft(&script)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_summed() {
        let listing = "table ip sluice_jt {\n chain input {\n ip saddr 127.0.0.11 ip daddr 127.0.0.12 counter packets 12 bytes 900 drop\n ip saddr 127.0.0.12 ip daddr 127.0.0.11 counter packets 3 bytes 10 drop\n }\n}";
        assert_eq!(count_packets(listing), 15);
    }

    #[test]
    fn one_rule_per_severed_link_by_address() {
        let ip = |i: NodeId| Ipv4Addr::new(127, 0, 0, 10 + i as u8);
        assert_eq!(
            rules(&[(1, 2), (2, 1), (3, 1)], ip),
            vec![
                "ip saddr 127.0.0.11 ip daddr 127.0.0.12 counter drop".to_string(),
                "ip saddr 127.0.0.12 ip daddr 127.0.0.11 counter drop".to_string(),
                "ip saddr 127.0.0.13 ip daddr 127.0.0.11 counter drop".to_string(),
            ]
        );
        assert!(rules(&[], ip).is_empty());
    }

    #[test]
    fn loss_drops_a_share_both_ways_of_each_target() {
        let ip = |i: NodeId| Ipv4Addr::new(127, 0, 0, 10 + i as u8);
        assert_eq!(
            loss_rules(&[2, 3], 20, ip),
            vec![
                "ip saddr 127.0.0.12 numgen random mod 100 < 20 counter drop".to_string(),
                "ip daddr 127.0.0.12 numgen random mod 100 < 20 counter drop".to_string(),
                "ip saddr 127.0.0.13 numgen random mod 100 < 20 counter drop".to_string(),
                "ip daddr 127.0.0.13 numgen random mod 100 < 20 counter drop".to_string(),
            ]
        );
    }
}
