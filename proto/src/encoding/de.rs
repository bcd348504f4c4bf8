//! The reading half of the encoding (see the module docs for the format and
//! for what decoding promises about hostile input).

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::ser::{MARK_U16, MARK_U32, MARK_U64, MARK_U128, SINGLE_BYTE_MAX};
use super::{DEPTH_MAX, DecodeError};

/// An error raised where the decoder's position is not known (by serde or a
/// type's own `Deserialize`); [`Decoder::finish`] fills the position in.
const OFFSET_UNKNOWN: usize = usize::MAX;

impl de::Error for DecodeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        DecodeError {
            offset: OFFSET_UNKNOWN,
            reason: msg.to_string(),
        }
    }
}

pub(super) struct Decoder<'de> {
    /// The input, already cut to the caller's limit.
    input: &'de [u8],
    pos: usize,
    depth: usize,
    /// Bytes the caller passed beyond its limit: running into the cut end
    /// is then the limit's doing, and the error says so.
    cut_bytes: usize,
}

/// The widths a varint can be read into; a marker for a wider value than
/// the width holds is an error, not a truncation.
#[derive(Clone, Copy)]
enum Width {
    U16,
    U32,
    U64,
}

impl Width {
    fn bits(self) -> u32 {
        match self {
            Width::U16 => 16,
            Width::U32 => 32,
            Width::U64 => 64,
        }
    }
}

impl<'de> Decoder<'de> {
    pub(super) fn new(bytes: &'de [u8], limit_bytes: usize) -> Self {
        let end = bytes.len().min(limit_bytes);
        Decoder {
            input: &bytes[..end],
            pos: 0,
            depth: 0,
            cut_bytes: bytes.len() - end,
        }
    }

    /// The decoded value and the bytes it took, or the error with the
    /// position it happened at.
    pub(super) fn finish<T>(
        &self,
        decoded: Result<T, DecodeError>,
    ) -> Result<(T, usize), DecodeError> {
        match decoded {
            Ok(value) => Ok((value, self.pos)),
            Err(mut e) => {
                if e.offset == OFFSET_UNKNOWN {
                    e.offset = self.pos;
                }
                Err(e)
            }
        }
    }

    fn error(&self, reason: String) -> DecodeError {
        DecodeError {
            offset: self.pos,
            reason,
        }
    }

    fn left(&self) -> usize {
        self.input.len() - self.pos
    }

    /// The next `n` bytes, borrowed from the input.
    #[inline]
    fn take(&mut self, n: usize) -> Result<&'de [u8], DecodeError> {
        if n > self.left() {
            let reason = if self.cut_bytes > 0 {
                format!(
                    "{n} bytes needed but the decode limit of {} bytes leaves {}",
                    self.input.len(),
                    self.left()
                )
            } else {
                format!("{n} bytes needed but the input ends after {}", self.left())
            };
            return Err(self.error(reason));
        }
        let bytes = &self.input[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N)?;
        Ok(bytes.try_into().expect("take returns the length asked for"))
    }

    #[inline]
    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    /// A varint of at most 64 bits (`width` says how many the type holds).
    #[inline]
    fn varint(&mut self, width: Width) -> Result<u64, DecodeError> {
        let first = self.byte()?;
        if first <= SINGLE_BYTE_MAX {
            return Ok(u64::from(first));
        }
        Ok(match (first, width) {
            (MARK_U16, _) => u64::from(u16::from_le_bytes(self.array()?)),
            (MARK_U32, Width::U32 | Width::U64) => u64::from(u32::from_le_bytes(self.array()?)),
            (MARK_U64, Width::U64) => u64::from_le_bytes(self.array()?),
            _ => return Err(self.bad_marker(first, width)),
        })
    }

    fn varint128(&mut self) -> Result<u128, DecodeError> {
        match self.input.get(self.pos) {
            Some(&MARK_U128) => {
                self.pos += 1;
                Ok(u128::from_le_bytes(self.array()?))
            }
            _ => self.varint(Width::U64).map(u128::from),
        }
    }

    fn bad_marker(&mut self, marker: u8, width: Width) -> DecodeError {
        self.pos -= 1;
        self.error(format!(
            "varint marker {marker} does not start a {}-bit integer",
            width.bits()
        ))
    }

    #[inline]
    fn unsigned<T: TryFrom<u64>>(&mut self, width: Width) -> Result<T, DecodeError> {
        let v = self.varint(width)?;
        T::try_from(v).map_err(|_| self.error(format!("{v} does not fit its type")))
    }

    #[inline]
    fn signed<T: TryFrom<i64>>(&mut self, width: Width) -> Result<T, DecodeError> {
        let z = self.varint(width)?;
        let v = ((z >> 1) as i64) ^ -((z & 1) as i64);
        T::try_from(v).map_err(|_| self.error(format!("{v} does not fit its type")))
    }

    fn unsigned128(&mut self) -> Result<u128, DecodeError> {
        self.varint128()
    }

    fn signed128(&mut self) -> Result<i128, DecodeError> {
        let z = self.varint128()?;
        Ok(((z >> 1) as i128) ^ -((z & 1) as i128))
    }

    /// A length of `what` whose every unit takes at least one byte: one
    /// claiming more than the bytes left is refused here, before a
    /// collection is sized or a loop runs for it.
    fn len(&mut self, what: &str) -> Result<usize, DecodeError> {
        let start = self.pos;
        let len: u64 = self.unsigned(Width::U64)?;
        let left = self.left();
        if len > left as u64 {
            self.pos = start;
            let limit = if self.cut_bytes > 0 {
                format!(" within the decode limit of {} bytes", self.input.len())
            } else {
                String::new()
            };
            return Err(self.error(format!(
                "{what} claims a length of {len} but {left} bytes are left{limit}"
            )));
        }
        Ok(len as usize)
    }

    fn bytes(&mut self) -> Result<&'de [u8], DecodeError> {
        let len = self.len("a byte string")?;
        self.take(len)
    }

    fn str(&mut self) -> Result<&'de str, DecodeError> {
        let start = self.pos;
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes).map_err(|e| DecodeError {
            offset: start,
            reason: format!("a string that is not UTF-8: {e}"),
        })
    }

    /// Runs `f` one nesting level deeper, refusing past [`DEPTH_MAX`].
    fn nested<R>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<R, DecodeError>,
    ) -> Result<R, DecodeError> {
        if self.depth >= DEPTH_MAX {
            return Err(self.error(format!("nested deeper than {DEPTH_MAX} levels")));
        }
        self.depth += 1;
        let result = f(self);
        self.depth -= 1;
        result
    }
}

/// Integers: one method per type, each reading its width.
macro_rules! integers {
    ($($method:ident => $visit:ident, $read:ident($($width:expr)?);)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
                visitor.$visit(self.$read($($width)?)?)
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for &mut Decoder<'de> {
    type Error = DecodeError;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, DecodeError> {
        Err(self.error(
            "this encoding does not describe itself: a type that needs to guess what comes \
             next (untagged or flattened serde attributes) cannot be decoded"
                .into(),
        ))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.byte()? {
            0 => visitor.visit_bool(false),
            1 => visitor.visit_bool(true),
            b => {
                self.pos -= 1;
                Err(self.error(format!("a bool must be 0 or 1, not {b}")))
            }
        }
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_i8(self.byte()? as i8)
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_u8(self.byte()?)
    }

    integers! {
        deserialize_i16 => visit_i16, signed(Width::U16);
        deserialize_i32 => visit_i32, signed(Width::U32);
        deserialize_i64 => visit_i64, signed(Width::U64);
        deserialize_i128 => visit_i128, signed128();
        deserialize_u16 => visit_u16, unsigned(Width::U16);
        deserialize_u32 => visit_u32, unsigned(Width::U32);
        deserialize_u64 => visit_u64, unsigned(Width::U64);
        deserialize_u128 => visit_u128, unsigned128();
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_f32(f32::from_le_bytes(self.array()?))
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_f64(f64::from_le_bytes(self.array()?))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let start = self.pos;
        let first = self.byte()?;
        let width = match first {
            0x00..=0x7f => 1,
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => 0,
        };
        self.pos = start;
        let c = if width == 0 {
            None
        } else {
            let bytes = self.take(width)?;
            std::str::from_utf8(bytes)
                .ok()
                .and_then(|s| s.chars().next())
        };
        match c {
            Some(c) => visitor.visit_char(c),
            None => {
                self.pos = start;
                Err(self.error("a char that is not UTF-8".into()))
            }
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_borrowed_str(self.str()?)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_borrowed_str(self.str()?)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_borrowed_bytes(self.bytes()?)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_borrowed_bytes(self.bytes()?)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.byte()? {
            0 => visitor.visit_none(),
            1 => self.nested(|de| visitor.visit_some(de)),
            tag => {
                self.pos -= 1;
                Err(self.error(format!("an Option's tag must be 0 or 1, not {tag}")))
            }
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.nested(|de| visitor.visit_newtype_struct(de))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let len = self.len("a sequence")?;
        self.nested(|de| visitor.visit_seq(Elements { de, left: len }))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.nested(|de| visitor.visit_seq(Elements { de, left: len }))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let len = self.len("a map")?;
        self.nested(|de| visitor.visit_map(Elements { de, left: len }))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_tuple(fields.len(), visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.nested(|de| visitor.visit_enum(de))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, DecodeError> {
        Err(self.error("this encoding has no field or variant names".into()))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(
        self,
        _visitor: V,
    ) -> Result<V::Value, DecodeError> {
        Err(self.error("this encoding cannot skip a value it does not know".into()))
    }
}

/// The elements of a sequence, tuple or struct, or the entries of a map.
struct Elements<'a, 'de> {
    de: &'a mut Decoder<'de>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Elements<'_, 'de> {
    type Error = DecodeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DecodeError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        // Checked against the bytes left when the length was read; serde
        // caps what it preallocates from a hint besides.
        Some(self.left)
    }
}

impl<'de> de::MapAccess<'de> for Elements<'_, 'de> {
    type Error = DecodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DecodeError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DecodeError> {
        seed.deserialize(&mut *self.de)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

impl<'de> de::EnumAccess<'de> for &mut Decoder<'de> {
    type Error = DecodeError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self), DecodeError> {
        let index: u32 = self.unsigned(Width::U32)?;
        let value = seed.deserialize(index.into_deserializer())?;
        Ok((value, self))
    }
}

impl<'de> de::VariantAccess<'de> for &mut Decoder<'de> {
    type Error = DecodeError;

    fn unit_variant(self) -> Result<(), DecodeError> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, DecodeError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        de::Deserializer::deserialize_tuple(self, len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        de::Deserializer::deserialize_tuple(self, fields.len(), visitor)
    }
}
