//! Every message a node or client decodes from a peer, fed mutated frames
//! for a bounded time (see `sluice-fuzzing`): no input panics, hangs or
//! allocates beyond what the frame holds.

mod samples;

use samples::{requests, responses};
use sluice_proto::*;

#[test]
fn fuzz_requests() {
    let seeds: Vec<Vec<u8>> = requests()
        .iter()
        .chain(&samples::requests_with_headers())
        .map(|r| codec::encode(r).unwrap())
        .collect();
    sluice_fuzzing::run("proto::Request", &seeds, |frame| {
        if let Ok(request) = codec::decode::<Request>(frame) {
            // Whatever decodes re-encodes, and to a frame that decodes alike.
            let again = codec::encode(&request).unwrap();
            assert_eq!(codec::decode::<Request>(&again).unwrap(), request);
        }
    });
}

#[test]
fn fuzz_responses() {
    let seeds: Vec<Vec<u8>> = responses()
        .iter()
        .chain(&samples::responses_with_headers())
        .map(|r| codec::encode(r).unwrap())
        .collect();
    sluice_fuzzing::run("proto::Response", &seeds, |frame| {
        let owned = codec::decode::<Response>(frame);
        // The borrowing decoder of record frames agrees with the owned one.
        if let Ok(Some((records, high_watermark))) = codec::decode_records_ref(frame) {
            match owned {
                Ok(
                    Response::Records {
                        records: owned_records,
                        high_watermark: owned_hw,
                    }
                    | Response::RecordsWithHeaders {
                        records: owned_records,
                        high_watermark: owned_hw,
                    },
                ) => {
                    assert_eq!(high_watermark, owned_hw);
                    let copied: Vec<_> = records.iter().map(|r| r.to_owned_record()).collect();
                    assert_eq!(copied, owned_records);
                }
                other => panic!("decode_records_ref accepted what decode read as {other:?}"),
            }
        }
    });
}
