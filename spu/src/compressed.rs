//! Produce batches that arrive compressed, and the topic's say in what
//! compression it takes.
//!
//! A [`CompressedProduce`] is expanded here, before anything else looks at
//! it, into the [`ProduceRequest`] it stands for; from then on it is checked,
//! replicated and stored like any batch (stored compressed or not by the
//! topic's own setting, see `sluice_storage::LogConfig::compression`). The
//! expansion is bounded by what an uncompressed batch may hold, so a small
//! frame cannot make the node allocate more than one batch's worth.

use sluice_proto::limits::{PRODUCE_BATCH_EXPANDED_BYTES_MAX, PRODUCE_BATCH_RECORDS_MAX};
use sluice_proto::{CompressedProduce, Compression, ProduceRequest, Record, WireError};

/// The batch `produce` carries, its records expanded and decoded.
pub(crate) fn expand(produce: CompressedProduce) -> Result<ProduceRequest, WireError> {
    if produce.compression == Compression::None {
        return Err(WireError::InvalidArgument {
            what: format!("{} produce batch", produce.compression),
            reason: "a compressed batch must name its codec (gzip, snappy, lz4 or zstd)".into(),
        });
    }
    decode_batch::<sluice_proto::record::v1::Records>(produce, |r| r.0)
}

/// The batch of a `Request::ProduceWithHeaders`: its records with their
/// headers, compressed with its codec unless that is `None`.
pub(crate) fn expand_with_headers(produce: CompressedProduce) -> Result<ProduceRequest, WireError> {
    decode_batch::<Vec<Record>>(produce, |r| r)
}

/// Expands (unless uncompressed) and decodes the records of `produce` as a `T`.
fn decode_batch<T: serde::de::DeserializeOwned>(
    produce: CompressedProduce,
    records_of: impl FnOnce(T) -> Vec<Record>,
) -> Result<ProduceRequest, WireError> {
    let invalid = |reason: String| WireError::InvalidArgument {
        what: format!("{} produce batch", produce.compression),
        reason,
    };
    let bytes = if produce.compression == Compression::None {
        if produce.records.len() > PRODUCE_BATCH_EXPANDED_BYTES_MAX {
            return Err(invalid(format!(
                "{} bytes of records exceed the limit of {PRODUCE_BATCH_EXPANDED_BYTES_MAX}",
                produce.records.len()
            )));
        }
        std::borrow::Cow::Borrowed(&produce.records[..])
    } else {
        std::borrow::Cow::Owned(
            sluice_compress::decompress(
                produce.compression,
                &produce.records,
                PRODUCE_BATCH_EXPANDED_BYTES_MAX,
            )
            .map_err(|e| invalid(e.to_string()))?,
        )
    };
    let (records, used) =
        sluice_proto::encoding::from_slice::<T>(&bytes, PRODUCE_BATCH_EXPANDED_BYTES_MAX)
            .map_err(|e| invalid(format!("its records do not decode: {e}")))?;
    let records = records_of(records);
    if used != bytes.len() {
        return Err(invalid(format!(
            "{} bytes left over after its records",
            bytes.len() - used
        )));
    }
    if records.len() > PRODUCE_BATCH_RECORDS_MAX {
        return Err(invalid(format!(
            "{} records exceed the limit of {PRODUCE_BATCH_RECORDS_MAX}",
            records.len()
        )));
    }
    Ok(ProduceRequest {
        topic: produce.topic,
        partition: produce.partition,
        records,
        producer: produce.producer,
    })
}

/// Refuses a batch compressed with `codec` (`None`: sent uncompressed) for a
/// topic whose compression setting does not take it, as Fluvio does: a topic
/// created with `--compression-type gzip` takes gzip batches only.
pub(crate) fn check_topic_takes(
    topic: &str,
    setting: sluice_proto::TopicCompression,
    codec: Compression,
) -> Result<(), WireError> {
    if setting.accepts(codec) {
        return Ok(());
    }
    let sent = match codec {
        Compression::None => "uncompressed".to_string(),
        other => format!("{other}-compressed"),
    };
    Err(WireError::InvalidArgument {
        what: "compression".into(),
        reason: format!(
            "topic {topic:?} takes {} batches only (its compression type is {setting}), \
             and this one was sent {sent}; produce with --compression {} or leave \
             --compression unset to follow the topic",
            match setting {
                sluice_proto::TopicCompression::None => "uncompressed".to_string(),
                other => format!("{other}-compressed"),
            },
            setting.stored()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proto::TopicCompression;

    fn batch(codec: Compression, records: &[Record]) -> CompressedProduce {
        let encoded =
            sluice_proto::encoding::to_vec(&sluice_proto::record::v1::Records(records.to_vec()))
                .unwrap();
        CompressedProduce {
            topic: "t".into(),
            partition: 0,
            compression: codec,
            records: sluice_compress::compress(codec, &encoded),
            producer: None,
        }
    }

    #[test]
    fn a_compressed_batch_expands_to_its_records() {
        let records: Vec<Record> = (0..100)
            .map(|i| Record::new(format!("value {i}").into_bytes()))
            .collect();
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let expanded = expand(batch(codec, &records)).unwrap();
            assert_eq!(expanded.records, records, "{codec}");
            assert_eq!((expanded.topic.as_str(), expanded.partition), ("t", 0));
        }
    }

    #[test]
    fn bombs_garbage_and_a_missing_codec_are_refused_by_name() {
        // 64 MiB of one byte in a few KB: far past a batch's expanded limit.
        let bomb = CompressedProduce {
            records: sluice_compress::compress(Compression::Zstd, &vec![7u8; 64 << 20]),
            ..batch(Compression::Zstd, &[])
        };
        assert!(bomb.records.len() < 64 * 1024);
        let err = expand(bomb).unwrap_err().to_string();
        assert!(err.contains("expands to more than"), "{err}");
        let garbage = CompressedProduce {
            records: vec![1, 2, 3, 4, 5, 6, 7, 8],
            ..batch(Compression::Gzip, &[])
        };
        let err = expand(garbage).unwrap_err().to_string();
        assert!(err.contains("gzip"), "{err}");
        // Valid gzip of bytes that are not records.
        let not_records = CompressedProduce {
            records: sluice_compress::compress(Compression::Gzip, &[0xff; 40]),
            ..batch(Compression::Gzip, &[])
        };
        let err = expand(not_records).unwrap_err().to_string();
        assert!(
            err.contains("do not decode") || err.contains("left over"),
            "{err}"
        );
        let err = expand(batch(Compression::None, &[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("must name its codec"), "{err}");
    }

    #[test]
    fn a_topic_refuses_other_codecs_saying_which_it_takes() {
        check_topic_takes("t", TopicCompression::Any, Compression::Lz4).unwrap();
        check_topic_takes("t", TopicCompression::Snappy, Compression::Snappy).unwrap();
        let err = check_topic_takes("t", TopicCompression::Snappy, Compression::Lz4)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("takes snappy-compressed batches only"),
            "{err}"
        );
        assert!(err.contains("sent lz4-compressed"), "{err}");
        assert!(err.contains("--compression snappy"), "{err}");
        let err = check_topic_takes("t", TopicCompression::Gzip, Compression::None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sent uncompressed"), "{err}");
    }

    /// A hostile client's compressed produce: mutated codec data of every
    /// codec (input bytes chosen by the fuzzer, codec by its first byte) is
    /// expanded or refused, never a panic or an allocation past the bound.
    #[test]
    fn fuzz_compressed_produce_batches() {
        let records: Vec<Record> = (0..20)
            .map(|i| Record::new(format!("value {i}").into_bytes()))
            .collect();
        let seeds: Vec<Vec<u8>> = Compression::ALL
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, &codec)| {
                let mut seed = vec![i as u8];
                seed.extend(batch(codec, &records).records);
                seed
            })
            .collect();
        sluice_fuzzing::run("spu::compressed::expand", &seeds, |input| {
            let Some((&which, data)) = input.split_first() else {
                return;
            };
            let codec = Compression::ALL[usize::from(which) % Compression::ALL.len()];
            let produce = CompressedProduce {
                records: data.to_vec(),
                compression: codec,
                ..batch(Compression::Gzip, &[])
            };
            let _ = expand(produce);
        });
    }
}
