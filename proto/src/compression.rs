//! Names of the compression codecs, as the wire, the metadata and the CLI
//! spell them. The codecs themselves live in `sluice-compress`: this crate
//! stays free of heavy dependencies.

use serde::{Deserialize, Serialize};

/// How the bytes of one batch are compressed. The variant order is the wire
/// encoding: append, never reorder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The lowercase name the CLI takes and prints.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// The codec named `name` (case-insensitive); the error lists the names.
    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                format!("unknown compression {name:?}; use none, gzip, snappy, lz4 or zstd")
            })
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A topic's compression setting: which producer batches it accepts and how
/// its replicas store them. Fluvio's `--compression-type`. The variant order
/// is the metadata encoding: append, never reorder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TopicCompression {
    /// Batches compressed any way, or not at all; stored uncompressed.
    #[default]
    Any,
    /// Only uncompressed batches; stored uncompressed.
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl TopicCompression {
    pub const ALL: [TopicCompression; 6] = [
        TopicCompression::Any,
        TopicCompression::None,
        TopicCompression::Gzip,
        TopicCompression::Snappy,
        TopicCompression::Lz4,
        TopicCompression::Zstd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TopicCompression::Any => "any",
            other => other.stored().name(),
        }
    }

    /// The setting named `name` (case-insensitive; Fluvio's `uncompressed`
    /// is `none`); the error lists the names.
    pub fn parse(name: &str) -> Result<Self, String> {
        if name.eq_ignore_ascii_case("uncompressed") {
            return Ok(TopicCompression::None);
        }
        Self::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                format!(
                    "unknown compression type {name:?}; use any, none, gzip, snappy, lz4 or zstd"
                )
            })
    }

    /// Whether a producer's batch compressed with `codec` may be written.
    pub fn accepts(self, codec: Compression) -> bool {
        self == TopicCompression::Any || self.stored() == codec
    }

    /// How the topic's replicas store batches in their segments, and the
    /// codec a producer uses when it was not told one.
    pub fn stored(self) -> Compression {
        match self {
            TopicCompression::Any | TopicCompression::None => Compression::None,
            TopicCompression::Gzip => Compression::Gzip,
            TopicCompression::Snappy => Compression::Snappy,
            TopicCompression::Lz4 => Compression::Lz4,
            TopicCompression::Zstd => Compression::Zstd,
        }
    }
}

impl std::fmt::Display for TopicCompression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for c in Compression::ALL {
            assert_eq!(Compression::parse(c.name()), Ok(c));
        }
        for t in TopicCompression::ALL {
            assert_eq!(TopicCompression::parse(&t.name().to_uppercase()), Ok(t));
        }
        assert_eq!(
            TopicCompression::parse("uncompressed"),
            Ok(TopicCompression::None)
        );
        let err = Compression::parse("brotli").unwrap_err();
        assert!(err.contains("gzip, snappy, lz4 or zstd"), "{err}");
        assert!(TopicCompression::parse("any").is_ok());
        assert!(Compression::parse("any").is_err());
    }

    #[test]
    fn a_topic_accepts_its_own_codec_or_any_when_it_says_any() {
        for c in Compression::ALL {
            assert!(TopicCompression::Any.accepts(c));
        }
        assert!(TopicCompression::Gzip.accepts(Compression::Gzip));
        assert!(!TopicCompression::Gzip.accepts(Compression::None));
        assert!(!TopicCompression::Snappy.accepts(Compression::Lz4));
        assert!(TopicCompression::None.accepts(Compression::None));
        assert!(!TopicCompression::None.accepts(Compression::Zstd));
        assert_eq!(TopicCompression::Any.stored(), Compression::None);
        assert_eq!(TopicCompression::Zstd.stored(), Compression::Zstd);
    }
}
