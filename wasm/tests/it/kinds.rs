//! Each kind end to end on sample records, and chains.

use crate::{instance, load, records, values};
use sluice_wasm::{Chain, Record, SmartModuleKind};
use std::collections::BTreeMap;

#[test]
fn hello_filter_keeps_records_with_an_a() {
    let e = crate::shared_engine();
    let mut i = instance(&e, "hello-filter");
    assert_eq!(i.module().kind(), SmartModuleKind::Filter);
    let out = i
        .process(&records(&["apple", "kiwi", "banana", ""]))
        .unwrap();
    assert_eq!(values(&out), ["apple", "banana"]);
    assert_eq!(out[1].offset, 2, "outputs keep their input's offset");
    assert_eq!(out[1].timestamp_ms, 1_700_000_000_002);
}

#[test]
fn log_level_filter_keeps_error_lines_and_names_a_line_that_is_not_json() {
    let e = crate::shared_engine();
    let mut i = instance(&e, "log-level-filter");
    assert_eq!(i.module().kind(), SmartModuleKind::Filter);
    let lines = [
        r#"{"ts":1,"level":"info","msg":"started"}"#,
        r#"{"level":"error","msg":"disk \"full\"","ctx":{"free":0,"tags":["a",null]}}"#,
        r#"{"msg":"the word error, but at level warn","level":"warn"}"#,
        r#"{"ctx":[1,2.5e3,true],"level":"err\u006fr"}"#,
    ];
    let out = i.process(&records(&lines)).unwrap();
    assert_eq!(values(&out), [lines[1], lines[3]]);
    assert_eq!(out.iter().map(|r| r.offset).collect::<Vec<_>>(), [1, 3]);
    // The whole value is parsed: a line broken after its level still fails.
    let broken = [lines[0], r#"{"level":"error","msg":"cut"#];
    let err = i.process(&records(&broken)).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("SmartModule log-level-filter: error at offset 1: "),
        "{err}"
    );
    let err = i.process(&records(&[r#"{"level":3}"#])).unwrap_err();
    assert!(err.to_string().contains("error at offset 0"), "{err}");
}

#[test]
fn digits_filter_drops_all_digit_messages() {
    let e = crate::shared_engine();
    let mut i = instance(&e, "digits-filter");
    let out = i
        .process(&records(&["12345", "abc", "12a45", "999", "hello world"]))
        .unwrap();
    assert_eq!(values(&out), ["abc", "12a45", "hello world"]);
}

#[test]
fn ssn_scrub_masks_social_security_numbers() {
    let e = crate::shared_engine();
    let mut i = instance(&e, "ssn-scrub");
    assert_eq!(i.module().kind(), SmartModuleKind::Map);
    let input = r#"{"social_security_number":"123-45-6789","event_type":"account-created","account_id":"1509aaf8-5863-4b41-bfe2-b081691d7a6e"}"#;
    let keyed = Record::new(0, 5, input.as_bytes()).with_key("acct");
    let out = i
        .process(&[
            keyed,
            Record::new(
                1,
                6,
                "no ssn 12-34-5678 here, but 987-65-4321 and 111-22-3333",
            ),
        ])
        .unwrap();
    assert_eq!(
        values(&out),
        [
            r#"{"social_security_number":"***-**-****","event_type":"account-created","account_id":"1509aaf8-5863-4b41-bfe2-b081691d7a6e"}"#,
            "no ssn 12-34-5678 here, but ***-**-**** and ***-**-****",
        ]
    );
    assert_eq!(out[0].key.as_deref(), Some(&b"acct"[..]), "the key is kept");
    assert_eq!(out[1].key, None);
}

#[test]
fn filter_map_keeps_and_halves_even_numbers() {
    let e = crate::shared_engine();
    let mut i = instance(&e, "even-filter-map");
    assert_eq!(i.module().kind(), SmartModuleKind::FilterMap);
    let out = i.process(&records(&["1", "2", "3", "10"])).unwrap();
    assert_eq!(values(&out), ["1", "5"]);
    assert_eq!(out.iter().map(|r| r.offset).collect::<Vec<_>>(), [1, 3]);
}

#[test]
fn array_map_splits_a_json_array() {
    let e = crate::shared_engine();
    let mut i = instance(&e, "json-array-map");
    assert_eq!(i.module().kind(), SmartModuleKind::ArrayMap);
    let out = i
        .process(&records(&[r#"["a", 2, {"b": true}]"#, "[]", "[7]"]))
        .unwrap();
    assert_eq!(values(&out), [r#""a""#, "2", r#"{"b":true}"#, "7"]);
    assert_eq!(
        out.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [0, 0, 0, 2]
    );
}

#[test]
fn aggregate_sums_across_batches_from_the_initial_value() {
    let e = crate::shared_engine();
    let m = load(&e, "sum-aggregate");
    assert_eq!(m.kind(), SmartModuleKind::Aggregate);
    let mut i = m
        .instantiate(BTreeMap::new(), Some(b"100".to_vec()))
        .unwrap();
    let out = i.process(&records(&["1", "2", "3"])).unwrap();
    assert_eq!(values(&out), ["101", "103", "106"]);
    let out = i.process(&records(&["4"])).unwrap();
    assert_eq!(
        values(&out),
        ["110"],
        "the accumulator carries over batches"
    );
    assert_eq!(i.accumulator(), b"110");

    let mut fresh = m.instantiate(BTreeMap::new(), None).unwrap();
    assert_eq!(values(&fresh.process(&records(&["5"])).unwrap()), ["5"]);
}

/// The examples that behave as Fluvio's own examples do (its CLI smoke
/// tests use them): upper-casing map, filter by parameter, concatenating
/// aggregate, JSON object to one record per value.
#[test]
fn the_fluvio_style_examples_do_what_their_names_say() {
    let e = crate::shared_engine();
    let mut upper = instance(&e, "uppercase-map");
    assert_eq!(
        values(&upper.process(&records(&["Banana", "ä"])).unwrap()),
        ["BANANA", "Ä"]
    );

    let filter = load(&e, "param-filter");
    let mut default = filter.instantiate(BTreeMap::new(), None).unwrap();
    let input = records(&["xxxxx", "aaaaa", "zzzzz"]);
    assert_eq!(values(&default.process(&input).unwrap()), ["aaaaa"]);
    let params = BTreeMap::from([("key".to_string(), "z".to_string())]);
    let mut with_z = filter.instantiate(params, None).unwrap();
    assert_eq!(values(&with_z.process(&input).unwrap()), ["zzzzz"]);
    let unknown = BTreeMap::from([("nope".to_string(), "1".to_string())]);
    let Err(e2) = filter.instantiate(unknown, None) else {
        panic!("an unknown parameter was accepted")
    };
    assert!(e2.to_string().contains("unknown parameter `nope`"), "{e2}");

    let mut concat = load(&e, "concat-aggregate")
        .instantiate(BTreeMap::new(), None)
        .unwrap();
    assert_eq!(
        values(&concat.process(&records(&["abc", "def"])).unwrap()),
        ["abc", "abcdef"]
    );

    let mut object = instance(&e, "object-values");
    let out = object
        .process(&records(&[
            r#"{"a": "Apple", "b": "Banana", "c": {"d": 1}}"#,
        ]))
        .unwrap();
    assert_eq!(values(&out), [r#""Apple""#, r#""Banana""#, r#"{"d":1}"#]);

    // Written as for Fluvio's SDK (eyre!, dataplane paths, SmartModuleInitError).
    let fluvio_style = load(&e, "fluvio-init-filter");
    let params = BTreeMap::from([("key".to_string(), "zz".to_string())]);
    let mut with_key = fluvio_style.instantiate(params, None).unwrap();
    assert_eq!(
        values(&with_key.process(&records(&["azz", "aaa", "zzb"])).unwrap()),
        ["azz", "zzb"]
    );
    let Err(missing) = fluvio_style.instantiate(BTreeMap::new(), None) else {
        panic!("a missing required parameter was accepted")
    };
    assert!(
        missing
            .to_string()
            .contains("Missing param key: give it with -e key=VALUE"),
        "{missing}"
    );
}

#[test]
fn module_error_names_the_offset_and_keeps_earlier_outputs() {
    let e = crate::shared_engine();
    let mut i = instance(&e, "sum-aggregate");
    let p = i.process_partial(&records(&["1", "two", "3"]));
    assert_eq!(values(&p.outputs), ["1"]);
    let err = p.error.expect("error");
    assert_eq!(err.offset(), Some(1));
    assert!(err.to_string().contains("sum-aggregate"), "{err}");
    assert!(err.to_string().contains("invalid digit"), "{err}");
    // A module's own error does not poison the instance.
    assert_eq!(values(&i.process(&records(&["2"])).unwrap()), ["3"]);
}

#[test]
fn chain_applies_modules_in_order() {
    let e = crate::shared_engine();
    let mut chain = Chain::new(vec![
        instance(&e, "digits-filter"),
        instance(&e, "ssn-scrub"),
    ]);
    let out = chain
        .process(&records(&["123456789", "ssn 123-45-6789", "42"]))
        .unwrap();
    assert_eq!(values(&out), ["ssn ***-**-****"]);

    let mut chain = Chain::new(vec![
        instance(&e, "json-array-map"),
        instance(&e, "sum-aggregate"),
    ]);
    let out = chain.process(&records(&["[1, 2, 3]", "[10]"])).unwrap();
    assert_eq!(values(&out), ["1", "3", "6", "16"]);
}

#[test]
fn empty_batch_is_a_no_op() {
    let e = crate::shared_engine();
    let mut i = instance(&e, "hello-filter");
    assert!(i.process(&[]).unwrap().is_empty());
    assert_eq!(i.stats().calls, 0);
}

/// A module's `look_back` sees records before its stream and rebuilds what it
/// keeps; its error names the record; a module without one ignores it.
#[test]
fn look_back_rebuilds_what_a_module_keeps() {
    let e = crate::shared_engine();
    let max = load(&e, "look-back-max");
    assert!(max.has_look_back());
    assert!(!load(&e, "hello-filter").has_look_back());
    let new_records = records(&["7", "10", "8", "12"]);
    let mut fresh = max.instantiate(BTreeMap::new(), None).unwrap();
    assert_eq!(
        values(&fresh.process(&new_records).unwrap()),
        ["7", "10", "12"]
    );
    let history = records(&["5", "9", "3"]);
    let raw: Vec<_> = history.iter().map(Record::raw).collect();
    let mut looked = max.instantiate(BTreeMap::new(), None).unwrap();
    looked.look_back(&raw).unwrap();
    assert_eq!(values(&looked.process(&new_records).unwrap()), ["10", "12"]);
    assert_eq!(looked.stats().records_in, 3 + 4);

    let bad = records(&["1", "x", "2"]);
    let raw: Vec<_> = bad.iter().map(Record::raw).collect();
    let err = max
        .instantiate(BTreeMap::new(), None)
        .unwrap()
        .look_back(&raw)
        .unwrap_err();
    assert_eq!(err.offset(), Some(1));
    assert!(
        err.to_string().contains("look_back") && err.to_string().contains("not a number"),
        "{err}"
    );
    let mut plain = instance(&e, "hello-filter");
    plain.look_back(&raw).unwrap();
    assert_eq!(plain.stats().calls, 0, "nothing to call");
    // In a chain, only the modules with a look_back function are shown them.
    let mut chain = Chain::new(vec![
        instance(&e, "hello-filter"),
        max.instantiate(BTreeMap::new(), None).unwrap(),
    ]);
    assert!(chain.has_look_back());
    let history = records(&["a100"]);
    let raw: Vec<_> = history.iter().map(Record::raw).collect();
    // hello-filter ignores it; look-back-max refuses "a100" as no number.
    assert!(chain.look_back_raw(&raw).is_err());
}
