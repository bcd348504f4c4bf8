//! Follows a partition from the beginning and prints each record; the
//! consumer resumes on another replica by itself if its node goes away.
//!
//! ```sh
//! cargo run -p sluice-client --example consume -- greetings 0
//! ```

use futures::StreamExt;
use sluice_client::Client;
use sluice_client::proto::{FetchRequest, ReadFrom, StartOffset, limits};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let topic = args.next().unwrap_or_else(|| "greetings".into());
    let partition: u32 = args.next().map_or(Ok(0), |p| p.parse())?;
    let home = sluice_client::config::sluice_home();
    let client = Client::from_profile(&home, None, None).await?;
    let request = FetchRequest {
        topic,
        partition,
        start: StartOffset::Beginning,
        end_offset: None,
        max_records: None,
        follow: true,
        max_bytes: limits::FETCH_RESPONSE_BYTES_DEFAULT as u32,
        read_from: ReadFrom::Any,
        replica: None,
        smartmodules: Vec::new(),
    };
    let mut records = client.consume(request).into_stream();
    while let Some(record) = records.next().await {
        let record = record?;
        let key = record.key.as_deref().map(String::from_utf8_lossy);
        println!(
            "{} [{}] {}",
            record.offset,
            key.unwrap_or_default(),
            String::from_utf8_lossy(&record.value)
        );
    }
    Ok(())
}
