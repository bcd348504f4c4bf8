//! Every size and count limit of the protocol, in one place, with its unit in
//! its name. Relations between limits are checked at compile time below, so
//! raising one without the others fails the build instead of a request.

/// Largest frame (length prefix excluded) a peer accepts; larger is rejected
/// before any allocation.
pub const FRAME_SIZE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Largest record (key + value).
pub const RECORD_SIZE_BYTES_MAX: usize = 1024 * 1024;
/// Largest produce batch (sum of record sizes).
pub const PRODUCE_BATCH_SIZE_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Records in one produce batch.
pub const PRODUCE_BATCH_RECORDS_MAX: usize = 100_000;
/// Default and maximum payload bytes in one fetch response frame.
pub const FETCH_RESPONSE_BYTES_DEFAULT: usize = 1024 * 1024;
pub const FETCH_RESPONSE_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Batches an idempotent producer may have on the wire to one partition at
/// once, counted by number from its oldest unacknowledged batch. A partition
/// remembers this many of each producer's last written batches, so any batch
/// the producer may resend is recognised.
pub const PRODUCER_IN_FLIGHT_PER_PARTITION_MAX: usize = 5;
/// Partitions of one topic.
pub const TOPIC_PARTITIONS_MAX: u32 = 1024;
/// Characters in a topic name.
pub const TOPIC_NAME_LEN_MAX: usize = 63;
/// Smallest segment a topic may ask for.
pub const SEGMENT_SIZE_BYTES_MIN: u64 = 1024;
/// Per-record framing overhead we budget for inside a frame (offset, lengths,
/// timestamp, partition), generous on purpose.
pub const RECORD_OVERHEAD_BYTES_MAX: usize = 64;

const _: () = assert!(RECORD_SIZE_BYTES_MAX <= PRODUCE_BATCH_SIZE_BYTES_MAX);
const _: () = assert!(
    PRODUCE_BATCH_SIZE_BYTES_MAX + PRODUCE_BATCH_RECORDS_MAX * RECORD_OVERHEAD_BYTES_MAX
        < FRAME_SIZE_BYTES_MAX
);
const _: () = assert!(FETCH_RESPONSE_BYTES_MAX + RECORD_SIZE_BYTES_MAX < FRAME_SIZE_BYTES_MAX);
const _: () = assert!(FETCH_RESPONSE_BYTES_DEFAULT <= FETCH_RESPONSE_BYTES_MAX);

/// Largest SmartModule that can be registered (it travels in one frame).
pub const SMARTMODULE_SIZE_BYTES_MAX: usize = 8 * 1024 * 1024;
const _: () = assert!(SMARTMODULE_SIZE_BYTES_MAX < FRAME_SIZE_BYTES_MAX);

/// Checks a topic name: 1..=63 characters of `[a-z0-9-]`, not starting or
/// ending with `-` (the same rule as Fluvio, so names are valid file names).
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    validate_name("topic", name)
}

/// Checks a SmartModule name with the same rule as topic names.
pub fn validate_smartmodule_name(name: &str) -> Result<(), String> {
    validate_name("SmartModule", name)
}

fn validate_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > TOPIC_NAME_LEN_MAX {
        return Err(format!(
            "{what} name must be 1 to {TOPIC_NAME_LEN_MAX} characters long, got {}",
            name.len()
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "{what} name {name:?} may contain only lowercase letters, digits and '-'"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "topic name {name:?} must not start or end with '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders-2").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("Orders").is_err());
        assert!(validate_topic_name("-a").is_err());
        assert!(validate_topic_name(&"a".repeat(64)).is_err());
    }
}
