//! Produces a few records with the idempotent, batching producer and prints
//! where each one was stored.
//!
//! ```sh
//! sluice cluster start --local && sluice topic create greetings
//! cargo run -p sluice-client --example produce -- greetings
//! ```
//! Connects with the current profile of `$SLUICE_HOME/config.toml` (written by
//! `sluice cluster start --local`).

use sluice_client::proto::Record;
use sluice_client::{Client, ProducerConfig};

/// Sends ten keyed records and returns where each was stored.
pub async fn run(
    client: &Client,
    topic: &str,
) -> Result<Vec<(u32, u64)>, Box<dyn std::error::Error>> {
    let producer = client.producer(topic, ProducerConfig::default()).await?;
    let mut deliveries = Vec::new();
    for i in 0..10 {
        // Records with the same key land in the same partition, in order.
        // Headers carry what is not the payload (consumers read them apart).
        let record = Record::with_key(format!("user-{}", i % 3), format!("hello #{i}"))
            .header("sent-by", "examples/produce");
        deliveries.push(producer.send(record).await?);
    }
    producer.flush().await?;
    let mut stored_at = Vec::new();
    for delivery in deliveries {
        let stored = delivery.await?;
        println!(
            "stored in partition {} at offset {}",
            stored.partition, stored.offset
        );
        stored_at.push((stored.partition, stored.offset));
    }
    Ok(stored_at)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let topic = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "greetings".into());
    let home = sluice_client::config::sluice_home();
    let client = Client::from_profile(&home, None, None).await?;
    run(&client, &topic).await?;
    Ok(())
}
