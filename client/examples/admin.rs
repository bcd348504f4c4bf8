//! Administers a cluster from Rust: its nodes, a topic's life (create,
//! describe, grow, delete) and a write to the partition it gained.
//!
//! ```sh
//! sluice cluster start --local
//! cargo run -p sluice-client --example admin -- inventory
//! ```
//! Connects with the current profile of `$SLUICE_HOME/config.toml`. The
//! integration suite runs [`run`] against a node it starts
//! (`cli/tests/it/client_examples.rs`).

use sluice_client::Client;
use sluice_client::proto::{Record, TopicSpec};

/// What [`run`] saw, for whoever called it.
#[derive(Debug)]
pub struct Seen {
    pub nodes: usize,
    pub partitions_after_growing: u32,
    pub offset_in_new_partition: u64,
}

pub async fn run(client: &Client, topic: &str) -> Result<Seen, Box<dyn std::error::Error>> {
    let status = client.cluster_status().await?;
    println!("{} node(s)", status.nodes.len());

    let mut spec = TopicSpec::new(topic);
    spec.partitions = 2;
    let created = client.create_topic(spec).await?;
    println!("created {topic}: {} partition(s)", created.spec.partitions);
    // Partitions are added, never removed: records stay where they are.
    let grown = client.add_partitions(topic, 1).await?;
    let described = client.describe_topic(topic).await?;
    assert_eq!(grown.spec.partitions, described.spec.partitions);
    println!("{topic} has {} partition(s) now", described.spec.partitions);

    // The new partition takes writes at once.
    let new_partition = described.spec.partitions - 1;
    let produced = client
        .produce(
            topic,
            new_partition,
            vec![Record::new("first in the new partition")],
        )
        .await?;
    println!(
        "wrote to partition {new_partition} at offset {}",
        produced.base_offset
    );

    let listed = client.list_topics().await?;
    println!(
        "topics: {}",
        listed
            .iter()
            .map(|t| t.spec.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    client.delete_topic(topic).await?;
    println!("deleted {topic}");
    Ok(Seen {
        nodes: status.nodes.len(),
        partitions_after_growing: described.spec.partitions,
        offset_in_new_partition: produced.base_offset,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let topic = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "inventory".into());
    let home = sluice_client::config::sluice_home();
    let client = Client::from_profile(&home, None, None).await?;
    run(&client, &topic).await?;
    Ok(())
}
