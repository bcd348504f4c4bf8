//! The wire format held still: frames of every message kind as an earlier
//! build wrote them (`tests/golden/`) must decode to the same messages and
//! be written again byte for byte (see `sluice_fuzzing::golden`).

mod samples;

use sluice_proto::{Request, Response, codec};

#[test]
fn golden_request_frames() {
    sluice_fuzzing::golden::check(
        env!("CARGO_MANIFEST_DIR"),
        "requests",
        &samples::requests(),
        |r| codec::encode(r).unwrap(),
        |b| codec::decode::<Request>(b).map_err(|e| e.to_string()),
    );
}

#[test]
fn golden_response_frames() {
    sluice_fuzzing::golden::check(
        env!("CARGO_MANIFEST_DIR"),
        "responses",
        &samples::responses(),
        |r| codec::encode(r).unwrap(),
        |b| codec::decode::<Response>(b).map_err(|e| e.to_string()),
    );
}
