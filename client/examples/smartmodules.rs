//! SmartModules from Rust: registers a filter module, reads a partition
//! through it by name and then the same code sent with the fetch (ad hoc),
//! and removes it again.
//!
//! ```sh
//! sluice cluster start --local
//! cargo build --release --target wasm32-unknown-unknown --manifest-path examples/smartmodules/Cargo.toml
//! cargo run -p sluice-client --example smartmodules -- \
//!     examples/smartmodules/target/wasm32-unknown-unknown/release/digits_filter.wasm
//! ```
//! The module keeps the records that are not all digits. The integration
//! suite runs [`run`] against a node it starts
//! (`cli/tests/it/client_examples.rs`).

use sluice_client::Client;
use sluice_client::proto::{FetchRequest, Record, SmartModuleInvocation, TopicSpec};

/// Reads `topic`/0 to its current end through `module`; the values.
async fn read_through(
    client: &Client,
    topic: &str,
    module: SmartModuleInvocation,
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut fetch = client
        .fetch(FetchRequest::new(topic, 0).smartmodule(module))
        .await?;
    let mut values = Vec::new();
    while let Some(batch) = fetch.next_batch().await? {
        for record in batch {
            values.push(String::from_utf8_lossy(&record.value).into_owned());
        }
    }
    Ok(values)
}

/// Returns what the registered module let through and what the ad hoc one did.
pub async fn run(
    client: &Client,
    wasm: Vec<u8>,
    topic: &str,
) -> Result<(Vec<String>, Vec<String>), Box<dyn std::error::Error>> {
    client.create_topic(TopicSpec::new(topic)).await?;
    let records = ["12345", "hello", "42", "sluice 1"]
        .map(Record::new)
        .to_vec();
    client.produce(topic, 0, records).await?;

    // Registered once, usable by every consumer on every node by its name.
    let info = client
        .create_smartmodule("not-digits", wasm.clone())
        .await?;
    println!(
        "registered {} ({:?}, {} bytes)",
        info.name, info.kind, info.size_bytes
    );
    let registered = read_through(
        client,
        topic,
        SmartModuleInvocation::registered("not-digits"),
    )
    .await?;
    println!("through the registered module: {registered:?}");

    // Or sent with the fetch, for this stream only. A module that takes
    // parameters gets them with `.param("key", "value")`; this one takes
    // none, and refuses any (a misspelt parameter is an error, not ignored).
    let ad_hoc = SmartModuleInvocation::ad_hoc("my-filter", wasm);
    let sent = read_through(client, topic, ad_hoc).await?;
    println!("through the module sent with the fetch: {sent:?}");

    client.delete_smartmodule("not-digits").await?;
    client.delete_topic(topic).await?;
    Ok((registered, sent))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: smartmodules PATH.wasm (e.g. the examples' digits_filter.wasm)")?;
    let wasm = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
    let home = sluice_client::config::sluice_home();
    let client = Client::from_profile(&home, None, None).await?;
    run(&client, wasm, "smartmodule-example").await?;
    Ok(())
}
