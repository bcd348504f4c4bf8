use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::*;

fn roundtrip<T>(value: &T) -> Vec<u8>
where
    T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
{
    let bytes = to_vec(value).unwrap();
    let back: T = from_slice_whole(&bytes, usize::MAX).unwrap();
    assert_eq!(&back, value);
    bytes
}

#[test]
fn varints_take_the_fewest_bytes_at_every_width_boundary() {
    assert_eq!(roundtrip(&0u64), [0]);
    assert_eq!(roundtrip(&250u64), [250]);
    assert_eq!(roundtrip(&251u64), [251, 251, 0]);
    assert_eq!(roundtrip(&65_535u32), [251, 0xff, 0xff]);
    assert_eq!(roundtrip(&65_536u64), [252, 0, 0, 1, 0]);
    assert_eq!(roundtrip(&(1u64 << 32)), [253, 0, 0, 0, 0, 1, 0, 0, 0]);
    assert_eq!(
        roundtrip(&u64::MAX),
        [253, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
    );
    let mut wide = vec![254];
    wide.extend_from_slice(&u128::MAX.to_le_bytes());
    assert_eq!(roundtrip(&u128::MAX), wide);
    // A byte is a byte, whatever its value.
    assert_eq!(roundtrip(&255u8), [255]);
    assert_eq!(roundtrip(&-1i8), [255]);
}

#[test]
fn signed_integers_are_zigzagged() {
    assert_eq!(roundtrip(&0i64), [0]);
    assert_eq!(roundtrip(&-1i64), [1]);
    assert_eq!(roundtrip(&1i64), [2]);
    assert_eq!(roundtrip(&-5i32), [9]);
    assert_eq!(roundtrip(&-126i16), [251, 251, 0]);
    assert_eq!(
        roundtrip(&i64::MIN),
        [253, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
    );
    assert_eq!(
        roundtrip(&i64::MAX),
        [253, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
    );
    for v in [i128::MIN, i128::MAX, -1, 0] {
        roundtrip(&v);
    }
    for v in [i16::MIN, i16::MAX] {
        roundtrip(&v);
    }
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Shape {
    Empty,
    Circle(f64),
    Pair(u8, char),
    Named { label: String, tags: Vec<String> },
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Everything {
    flag: bool,
    maybe: Option<u16>,
    shapes: Vec<Shape>,
    index: BTreeMap<String, (u32, i8)>,
    #[serde(with = "serde_bytes")]
    blob: Vec<u8>,
    unit: (),
    float: f32,
}

#[test]
fn every_kind_of_value_round_trips_with_its_layout() {
    assert_eq!(
        roundtrip(&Shape::Named {
            label: "é".into(),
            tags: vec!["a".into()]
        }),
        [3, 2, 0xc3, 0xa9, 1, 1, b'a']
    );
    assert_eq!(roundtrip(&Shape::Pair(7, '€')), [2, 7, 0xe2, 0x82, 0xac]);
    assert_eq!(roundtrip(&Some(true)), [1, 1]);
    assert_eq!(roundtrip(&None::<bool>), [0]);
    roundtrip(&Everything {
        flag: true,
        maybe: Some(300),
        shapes: vec![Shape::Empty, Shape::Circle(-0.5), Shape::Pair(0, '\0')],
        index: [("k".to_string(), (70_000, -3))].into(),
        blob: vec![0xfb; 300],
        unit: (),
        float: 1.5,
    });
}

#[test]
fn borrowed_strings_and_bytes_point_into_the_input() {
    #[derive(Serialize, Deserialize)]
    struct Borrowing<'a> {
        #[serde(borrow)]
        text: &'a str,
        #[serde(with = "serde_bytes")]
        bytes: &'a [u8],
    }
    let bytes = to_vec(&Borrowing {
        text: "hello",
        bytes: b"world",
    })
    .unwrap();
    let back: Borrowing = from_slice_whole(&bytes, bytes.len()).unwrap();
    assert_eq!((back.text, back.bytes), ("hello", &b"world"[..]));
    assert!(bytes.as_ptr_range().contains(&back.text.as_ptr()));
}

fn decode_err<T: for<'de> Deserialize<'de> + std::fmt::Debug>(bytes: &[u8]) -> DecodeError {
    from_slice_whole::<T>(bytes, usize::MAX).unwrap_err()
}

#[test]
fn a_length_beyond_the_bytes_left_is_refused_before_allocating() {
    // A sequence claiming 2^60 elements, in a 9-byte input.
    let mut bomb = vec![253];
    bomb.extend_from_slice(&(1u64 << 60).to_le_bytes());
    let e = decode_err::<Vec<u64>>(&bomb);
    assert_eq!(e.offset, 0);
    assert!(
        e.reason.contains("claims a length of 1152921504606846976"),
        "{e}"
    );
    let e = decode_err::<String>(&[5, b'a']);
    assert!(
        e.reason
            .contains("claims a length of 5 but 1 bytes are left"),
        "{e}"
    );
    let e = decode_err::<BTreeMap<u8, u8>>(&[3, 1, 1]);
    assert!(e.reason.contains("a map claims"), "{e}");
}

#[test]
fn markers_wider_than_the_type_and_bad_tags_are_refused_with_their_place() {
    let e = decode_err::<u16>(&[252, 0, 0, 1, 0]);
    assert_eq!(e.offset, 0);
    assert!(
        e.reason.contains("marker 252 does not start a 16-bit"),
        "{e}"
    );
    assert!(decode_err::<u64>(&[254; 17]).reason.contains("64-bit"));
    assert!(decode_err::<u64>(&[255]).reason.contains("marker 255"));
    assert_eq!(
        from_slice_whole::<u16>(&[251, 0xff, 0xff], 3).unwrap(),
        u16::MAX
    );
    let e = decode_err::<Vec<bool>>(&[2, 1, 2]);
    assert_eq!(e.offset, 2);
    assert!(e.reason.contains("a bool must be 0 or 1, not 2"), "{e}");
    let e = decode_err::<(u8, Option<u8>)>(&[0, 7]);
    assert_eq!(e.offset, 1);
    assert!(e.reason.contains("tag must be 0 or 1, not 7"), "{e}");
    let e = decode_err::<Shape>(&[9]);
    assert!(e.reason.contains("variant index"), "{e}");
    assert!(
        decode_err::<String>(&[2, 0xff, 0xfe])
            .reason
            .contains("not UTF-8")
    );
    assert!(
        decode_err::<char>(&[0xe2, 0x82])
            .reason
            .contains("input ends")
    );
    assert!(decode_err::<char>(&[0xff]).reason.contains("not UTF-8"));
    let e = decode_err::<u32>(&[1, 2]);
    assert!(e.reason.contains("1 bytes follow the value"), "{e}");
}

#[test]
fn the_limit_cuts_the_input_and_says_so() {
    let bytes = to_vec(&"abcdef".to_string()).unwrap();
    let e = from_slice::<String>(&bytes, 4).unwrap_err();
    assert!(
        e.reason.contains(
            "claims a length of 6 but 3 bytes are left within the decode limit of 4 bytes"
        ),
        "{e}"
    );
    let e = from_slice::<(u8, u8, u8)>(&[1, 2, 3], 2).unwrap_err();
    assert!(e.reason.contains("decode limit of 2 bytes"), "{e}");
    // Within the limit, bytes beyond it do not matter.
    assert_eq!(from_slice::<u8>(&[1, 2, 3], 1).unwrap(), (1, 1));
}

#[test]
fn nesting_is_bounded() {
    // Each level an Option: `Some` tags, then a None.
    type Deep = Option<Box<Deep2>>;
    #[derive(Debug, Deserialize)]
    struct Deep2(#[allow(dead_code)] Deep);
    let mut bytes = vec![1; DEPTH_MAX * 2];
    bytes.push(0);
    let e = decode_err::<Deep>(&bytes);
    assert!(e.reason.contains("nested deeper than 64 levels"), "{e}");
    let mut ok = vec![1; DEPTH_MAX / 2 - 1];
    ok.push(0);
    from_slice_whole::<Deep>(&ok, usize::MAX).unwrap();
}

#[test]
fn self_describing_types_are_refused_not_guessed() {
    #[derive(Debug, Deserialize)]
    #[serde(untagged)]
    #[allow(dead_code)]
    enum Guess {
        A(u8),
        B(String),
    }
    assert!(
        decode_err::<Guess>(&[1])
            .reason
            .contains("does not describe itself")
    );
    let unknown_length = UnknownLength;
    assert!(
        to_vec(&unknown_length)
            .unwrap_err()
            .to_string()
            .contains("must know its length")
    );
}

struct UnknownLength;

impl Serialize for UnknownLength {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        s.serialize_seq(None)?.end()
    }
}
