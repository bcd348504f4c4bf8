//! The Rust client of Sluice: admin calls, a batching producer and
//! push-based consumers, over QUIC with TLS.
//!
//! A [`Client`] holds one QUIC connection to a node (more when produce and
//! fetch are redirected to partition leaders). It is cheap to clone and can
//! be shared by any number of tasks. Connection settings usually come from a
//! profile in `$SLUICE_HOME/config.toml` (see [`config`]), which
//! `sluice cluster start --local` writes.
//!
//! ```no_run
//! use sluice_client::{Client, ProducerConfig, config::sluice_home};
//! use sluice_client::proto::{FetchRequest, Record, TopicSpec};
//!
//! # async fn example() -> Result<(), sluice_client::ClientError> {
//! let client = Client::from_profile(&sluice_home(), None, None).await?;
//!
//! let mut spec = TopicSpec::new("greetings");
//! spec.partitions = 2;
//! client.create_topic(spec).await?;
//!
//! // Produce: `send` queues, the returned future resolves once the record is durable.
//! let producer = client.producer("greetings", ProducerConfig::default()).await?;
//! // Headers are optional name/value pairs beside key and value.
//! let record = Record::with_key("alice", "hello").header("source", "web");
//! let delivery = producer.send(record).await?;
//! producer.flush().await?;
//! let stored = delivery.await?;
//! println!("stored at {}/{}", stored.partition, stored.offset);
//!
//! // Consume partition 0 from the beginning up to the current end.
//! // (`FetchRequest::new` starts from defaults; `.follow()`, `.from_end()`,
//! // `.smartmodule(...)` and the others change one thing each.)
//! let mut fetch = client
//!     .fetch(FetchRequest::new("greetings", stored.partition))
//!     .await?;
//! while let Some(batch) = fetch.next_batch().await? {
//!     for record in batch {
//!         println!("{}: {} {:?}", record.offset, String::from_utf8_lossy(&record.value), record.headers);
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Whole programs are in `client/examples/`: `produce`, `consume`, `admin`
//! (topics, partitions, nodes) and `smartmodules` (registered and ad hoc
//! modules); the integration suite runs each against a node it starts
//! (`cli/tests/it/client_examples.rs`), so they stay true.

mod client;
pub mod config;
mod consumer;
mod error;
mod fetch;
mod group;
mod offsets;
mod partitioner;
mod producer;
mod timeouts;
#[cfg(feature = "smartmodules")]
pub mod transform;

pub use client::{Client, ConnectOptions};
pub use consumer::Consumer;
pub use error::{ClientError, Result};
pub use fetch::FetchStream;
pub use group::{GroupConfig, GroupConsumer, GroupEvent};
pub use offsets::{CommitMode, OffsetCommitter};
pub use partitioner::{
    CustomPartitioner, KeyHashPartitioner, Keyless, Partitioner, RoundRobinPartitioner, fnv1a,
    partition_for_key,
};
pub use producer::{
    DeliveryFuture, PRODUCER_BUFFER_BYTES_DEFAULT, Producer, ProducerConfig, RecordMetadata,
};
pub use sluice_transport::CertKeyPair;
pub use timeouts::{
    ADMIN_RETRY_BUDGET, AUTO_COMMIT_INTERVAL_DEFAULT, REQUEST_TIMEOUT, RESUME_BUDGET,
};

/// The wire types, re-exported so users need no direct dependency on `sluice-proto`.
pub use sluice_proto as proto;
