//! The writing half of the encoding (see the module docs for the format).

use serde::ser::{self, Serialize};

use super::EncodeError;

/// Largest value that is its own one-byte varint; the bytes above it mark
/// a wider value that follows.
pub(super) const SINGLE_BYTE_MAX: u8 = 250;
pub(super) const MARK_U16: u8 = 251;
pub(super) const MARK_U32: u8 = 252;
pub(super) const MARK_U64: u8 = 253;
pub(super) const MARK_U128: u8 = 254;

pub(super) struct Encoder<'a> {
    pub(super) out: &'a mut Vec<u8>,
}

impl ser::Error for EncodeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        EncodeError(msg.to_string())
    }
}

/// Writes `v` as a varint in the fewest bytes.
pub(super) fn put_varint(out: &mut Vec<u8>, v: u128) {
    if v <= u128::from(SINGLE_BYTE_MAX) {
        out.push(v as u8);
    } else if let Ok(v) = u16::try_from(v) {
        out.push(MARK_U16);
        out.extend_from_slice(&v.to_le_bytes());
    } else if let Ok(v) = u32::try_from(v) {
        out.push(MARK_U32);
        out.extend_from_slice(&v.to_le_bytes());
    } else if let Ok(v) = u64::try_from(v) {
        out.push(MARK_U64);
        out.extend_from_slice(&v.to_le_bytes());
    } else {
        out.push(MARK_U128);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Zigzag: small magnitudes, negative or not, become small unsigned values.
pub(super) fn zigzag(v: i128) -> u128 {
    ((v << 1) ^ (v >> 127)) as u128
}

impl Encoder<'_> {
    fn varint(&mut self, v: impl Into<u128>) {
        put_varint(self.out, v.into());
    }

    fn signed(&mut self, v: impl Into<i128>) {
        // Zigzag in the value's own width is the same number as in i128's
        // for every value of that width.
        put_varint(self.out, zigzag(v.into()));
    }

    fn len(&mut self, len: Option<usize>) -> Result<(), EncodeError> {
        let len = len.ok_or_else(|| {
            EncodeError("a sequence or map must know its length to be encoded".into())
        })?;
        self.varint(len as u64);
        Ok(())
    }
}

/// Integers wider than a byte: one method per type, zigzagged or not.
macro_rules! integers {
    ($($method:ident($ty:ty) => $write:ident;)*) => {
        $(
            fn $method(self, v: $ty) -> Result<(), EncodeError> {
                self.$write(v);
                Ok(())
            }
        )*
    };
}

impl ser::Serializer for &mut Encoder<'_> {
    type Ok = ();
    type Error = EncodeError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn serialize_bool(self, v: bool) -> Result<(), EncodeError> {
        self.out.push(u8::from(v));
        Ok(())
    }

    fn serialize_i8(self, v: i8) -> Result<(), EncodeError> {
        self.out.push(v as u8);
        Ok(())
    }

    integers! {
        serialize_i16(i16) => signed;
        serialize_i32(i32) => signed;
        serialize_i64(i64) => signed;
        serialize_i128(i128) => signed;
        serialize_u16(u16) => varint;
        serialize_u32(u32) => varint;
        serialize_u64(u64) => varint;
        serialize_u128(u128) => varint;
    }

    fn serialize_u8(self, v: u8) -> Result<(), EncodeError> {
        self.out.push(v);
        Ok(())
    }

    fn serialize_f32(self, v: f32) -> Result<(), EncodeError> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_f64(self, v: f64) -> Result<(), EncodeError> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), EncodeError> {
        let mut utf8 = [0; 4];
        self.out
            .extend_from_slice(v.encode_utf8(&mut utf8).as_bytes());
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<(), EncodeError> {
        self.serialize_bytes(v.as_bytes())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), EncodeError> {
        self.varint(v.len() as u64);
        self.out.extend_from_slice(v);
        Ok(())
    }

    fn serialize_none(self) -> Result<(), EncodeError> {
        self.out.push(0);
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), EncodeError> {
        self.out.push(1);
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), EncodeError> {
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), EncodeError> {
        Ok(())
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        variant_index: u32,
        _variant: &'static str,
    ) -> Result<(), EncodeError> {
        self.varint(variant_index);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        variant_index: u32,
        _variant: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.varint(variant_index);
        value.serialize(self)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self, EncodeError> {
        self.len(len)?;
        Ok(self)
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self, EncodeError> {
        Ok(self)
    }

    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Self, EncodeError> {
        Ok(self)
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        variant_index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self, EncodeError> {
        self.varint(variant_index);
        Ok(self)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self, EncodeError> {
        self.len(len)?;
        Ok(self)
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self, EncodeError> {
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        variant_index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self, EncodeError> {
        self.varint(variant_index);
        Ok(self)
    }
}

/// Compound values are their parts one after another: every kind of
/// compound writes its elements the same way.
macro_rules! compound {
    ($trait:ident, $method:ident $(, $key:ident)?) => {
        impl ser::$trait for &mut Encoder<'_> {
            type Ok = ();
            type Error = EncodeError;

            fn $method<T: Serialize + ?Sized>(
                &mut self,
                $($key: &'static str,)?
                value: &T,
            ) -> Result<(), EncodeError> {
                $(let _ = $key;)?
                value.serialize(&mut **self)
            }

            fn end(self) -> Result<(), EncodeError> {
                Ok(())
            }
        }
    };
}

compound!(SerializeSeq, serialize_element);
compound!(SerializeTuple, serialize_element);
compound!(SerializeTupleStruct, serialize_field);
compound!(SerializeTupleVariant, serialize_field);
compound!(SerializeStruct, serialize_field, key);
compound!(SerializeStructVariant, serialize_field, key);

impl ser::SerializeMap for &mut Encoder<'_> {
    type Ok = ();
    type Error = EncodeError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), EncodeError> {
        key.serialize(&mut **self)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        value.serialize(&mut **self)
    }

    fn end(self) -> Result<(), EncodeError> {
        Ok(())
    }
}
