//! Follows a partition from the beginning and prints each record; the
//! consumer resumes on another replica by itself if its node goes away.
//!
//! ```sh
//! cargo run -p sluice-client --example consume -- greetings 0
//! ```

use futures::StreamExt;
use sluice_client::Client;
use sluice_client::proto::{ConsumerRecord, FetchRequest, ReadFrom};

/// Follows `topic`/`partition` from the beginning, printing each record
/// (with its headers, if it has some); returns the records once it has
/// `stop_after` of them (never, if `None`).
pub async fn run(
    client: &Client,
    topic: &str,
    partition: u32,
    stop_after: Option<usize>,
) -> Result<Vec<ConsumerRecord>, Box<dyn std::error::Error>> {
    let request = FetchRequest::new(topic, partition)
        .follow()
        .read_from(ReadFrom::Any);
    let mut records = client.consume(request).into_stream();
    let mut values = Vec::new();
    while let Some(record) = records.next().await {
        let record = record?;
        let key = record.key.as_deref().map(String::from_utf8_lossy);
        let headers: Vec<String> = record
            .headers
            .iter()
            .map(|h| format!("{}={}", h.key, String::from_utf8_lossy(&h.value)))
            .collect();
        println!(
            "{} [{}] {} {headers:?}",
            record.offset,
            key.unwrap_or_default(),
            String::from_utf8_lossy(&record.value)
        );
        values.push(record);
        if stop_after.is_some_and(|n| values.len() >= n) {
            break;
        }
    }
    Ok(values)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let topic = args.next().unwrap_or_else(|| "greetings".into());
    let partition: u32 = args.next().map_or(Ok(0), |p| p.parse())?;
    let home = sluice_client::config::sluice_home();
    let client = Client::from_profile(&home, None, None).await?;
    run(&client, &topic, partition, None).await?;
    Ok(())
}
