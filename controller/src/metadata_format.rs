//! The saved form of the controller's metadata (its file and its Raft
//! snapshots): a header with the format version, then the encoding of
//! that format. Every format a release wrote stays readable.

use std::collections::BTreeMap;

use sluice_proto::TopicSettingsV1;

use crate::Metadata;

/// Largest metadata state the controller decodes (file or snapshot). It
/// holds every registered SmartModule's code, so it may be large, but a
/// length field claiming more than this is corruption, refused before
/// anything is allocated for it.
const METADATA_BYTES_MAX: usize = 1024 * 1024 * 1024;

/// Leading bytes of the metadata's saved form (file and snapshot), then a
/// big-endian `u16` format version. Format 1 had no header.
const METADATA_MAGIC: &[u8; 4] = b"SLMD";
/// 2: ACL entries added. 3: committed consumer offsets added. 4: topic
/// settings ([`TopicSettingsV1`]), after format 3's fields. 5: topic
/// settings in their current shape ([`TopicSettings`]: key hash, system
/// topics) instead. 6: connectors, after format 5's fields.
pub(crate) const METADATA_FORMAT: u16 = 6;

/// The saved form of `md`: header, then its encoding, in the oldest format
/// that holds all of it, so that a cluster which never used a newer feature
/// can go back to the release before it: format 2 without consumer offsets,
/// groups and topic settings; format 3 without topic settings; format 4 if
/// every topic's settings fit the first shape; else 5; 6 with connectors.
pub(crate) fn encode_metadata(md: &Metadata) -> Vec<u8> {
    let settings_v1: Option<BTreeMap<u32, TopicSettingsV1>> = md
        .topic_settings
        .iter()
        .map(|(id, s)| s.to_v1().map(|v1| (*id, v1)))
        .collect();
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(METADATA_MAGIC);
    if !md.connectors.is_empty() {
        out.extend_from_slice(&METADATA_FORMAT.to_be_bytes());
        sluice_proto::encoding::append_to(&mut out, md).expect("metadata always encodes");
        sluice_proto::encoding::append_to(&mut out, &md.topic_settings)
            .expect("metadata always encodes");
        sluice_proto::encoding::append_to(&mut out, &md.connectors)
            .expect("metadata always encodes");
    } else if md.consumers.is_empty() && md.groups.is_empty() && md.topic_settings.is_empty() {
        out.extend_from_slice(&2u16.to_be_bytes());
        let v2 = (
            md.last_index,
            md.next_topic_id,
            &md.nodes,
            &md.removed,
            &md.topics,
            &md.smartmodules,
            &md.recent_requests,
            &md.acls,
        );
        sluice_proto::encoding::append_to(&mut out, &v2).expect("metadata always encodes");
    } else if md.topic_settings.is_empty() {
        out.extend_from_slice(&3u16.to_be_bytes());
        sluice_proto::encoding::append_to(&mut out, md).expect("metadata always encodes");
    } else if let Some(settings_v1) = settings_v1 {
        out.extend_from_slice(&4u16.to_be_bytes());
        sluice_proto::encoding::append_to(&mut out, md).expect("metadata always encodes");
        sluice_proto::encoding::append_to(&mut out, &settings_v1).expect("metadata always encodes");
    } else {
        out.extend_from_slice(&5u16.to_be_bytes());
        sluice_proto::encoding::append_to(&mut out, md).expect("metadata always encodes");
        sluice_proto::encoding::append_to(&mut out, &md.topic_settings)
            .expect("metadata always encodes");
    }
    out
}

/// Reads what [`encode_metadata`] wrote, or format 1 (no header) from an
/// older release.
pub(crate) fn decode_metadata(bytes: &[u8]) -> Result<Metadata, String> {
    let whole = |used: usize| {
        if used == bytes.len() {
            Ok(())
        } else {
            Err(format!(
                "{} trailing bytes after the metadata",
                bytes.len() - used
            ))
        }
    };
    match bytes.strip_prefix(METADATA_MAGIC.as_slice()) {
        Some([a, b, body @ ..]) => {
            let format = u16::from_be_bytes([*a, *b]);
            let (md, used) = match format {
                2 => sluice_proto::encoding::from_slice::<crate::metadata::MetadataV2>(
                    body,
                    METADATA_BYTES_MAX,
                )
                .map(|(v2, used)| (Metadata::from(v2), used))
                .map_err(|e| format!("format 2 metadata: {e}"))?,
                3..=METADATA_FORMAT => {
                    let (mut md, mut used) =
                        sluice_proto::encoding::from_slice::<Metadata>(body, METADATA_BYTES_MAX)
                            .map_err(|e| e.to_string())?;
                    let rest = &body[used..];
                    let settings_error = |e| format!("format {format} topic settings: {e}");
                    if format == 4 {
                        let (settings, more) = sluice_proto::encoding::from_slice::<
                            BTreeMap<u32, TopicSettingsV1>,
                        >(rest, METADATA_BYTES_MAX)
                        .map_err(settings_error)?;
                        md.topic_settings =
                            settings.into_iter().map(|(id, s)| (id, s.into())).collect();
                        used += more;
                    } else if format >= 5 {
                        let (settings, more) =
                            sluice_proto::encoding::from_slice(rest, METADATA_BYTES_MAX)
                                .map_err(settings_error)?;
                        md.topic_settings = settings;
                        used += more;
                    }
                    if format >= 6 {
                        let (connectors, more) =
                            sluice_proto::encoding::from_slice(&body[used..], METADATA_BYTES_MAX)
                                .map_err(|e| format!("format {format} connectors: {e}"))?;
                        md.connectors = connectors;
                        used += more;
                    }
                    md.state_bytes = md.count_state_bytes();
                    (md, used)
                }
                _ => {
                    return Err(format!(
                        "metadata format {format}, this build reads formats 1 to {METADATA_FORMAT}; \
                         run a release of sluice that reads it"
                    ));
                }
            };
            whole(used + METADATA_MAGIC.len() + 2)?;
            Ok(md)
        }
        Some(_) => Err("metadata header is truncated".into()),
        None => {
            let (v1, used) = sluice_proto::encoding::from_slice::<crate::metadata::MetadataV1>(
                bytes,
                METADATA_BYTES_MAX,
            )
            .map_err(|e| format!("format 1 metadata: {e}"))?;
            whole(used)?;
            Ok(v1.into())
        }
    }
}
