//! Parameters: delivered per instance, and rejected before any record flows when wrong.

use crate::{load, params, records, values};
use sluice_wasm::SmartModuleError;

const EVENTS: [&str; 2] = [
    r#"{"type":"login","account_id":"1", "timestamp": 1640878631,"user_client": "safari"}"#,
    r#"{"type":"play_demo","account_id":"1", "timestamp": 1640878650, "user_client": "safari"}"#,
];

#[test]
fn user_events_without_params_pass_every_field() {
    let e = crate::shared_engine();
    let m = load(&e, "user-events");
    assert!(m.has_params());
    let mut i = m.instantiate(params(&[]), None).unwrap();
    let out = i.process(&records(&EVENTS)).unwrap();
    assert_eq!(
        values(&out),
        [
            r#"{"type":"login","account_id":"1","timestamp":1640878631,"user_client":"safari"}"#,
            r#"{"type":"play_demo","account_id":"1","timestamp":1640878650,"user_client":"safari"}"#,
        ]
    );
}

#[test]
fn user_events_params_hide_fields_per_instance() {
    let e = crate::shared_engine();
    let m = load(&e, "user-events");
    let mut hide_two = m
        .instantiate(
            params(&[("show_account_id", "false"), ("show_user_client", "false")]),
            None,
        )
        .unwrap();
    let mut hide_one = m
        .instantiate(params(&[("show_account_id", "false")]), None)
        .unwrap();
    assert_eq!(
        values(&hide_two.process(&records(&EVENTS)).unwrap()),
        [
            r#"{"type":"login","timestamp":1640878631}"#,
            r#"{"type":"play_demo","timestamp":1640878650}"#,
        ]
    );
    assert_eq!(
        values(&hide_one.process(&records(&EVENTS[..1])).unwrap()),
        [r#"{"type":"login","timestamp":1640878631,"user_client":"safari"}"#]
    );
    assert_eq!(hide_one.module().hash(), hide_two.module().hash());
}

#[test]
fn unknown_param_is_an_init_error() {
    let e = crate::shared_engine();
    let err = load(&e, "user-events")
        .instantiate(params(&[("show_acount_id", "false")]), None)
        .unwrap_err();
    let SmartModuleError::Init { module, message } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(module, "user-events");
    assert!(
        message.contains("unknown parameter `show_acount_id`"),
        "{message}"
    );
    assert!(
        message.contains("show_account_id"),
        "lists the known keys: {message}"
    );
}

#[test]
fn unparsable_param_is_an_init_error() {
    let e = crate::shared_engine();
    let err = load(&e, "user-events")
        .instantiate(params(&[("show_timestamp", "maybe")]), None)
        .unwrap_err();
    let SmartModuleError::Init { message, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains("show_timestamp"), "{message}");
    assert!(message.contains("maybe"), "{message}");
}

#[test]
fn params_given_to_a_module_without_params_are_rejected() {
    let e = crate::shared_engine();
    let err = load(&e, "hello-filter")
        .instantiate(params(&[("x", "1")]), None)
        .unwrap_err();
    assert!(
        matches!(&err, SmartModuleError::Init { message, .. } if message.contains("takes no parameters")),
        "{err:?}"
    );
}

#[test]
fn init_function_receives_params_and_its_error_stops_the_stream() {
    let e = crate::shared_engine();
    let m = load(&e, "test-panic");
    assert!(m.has_init() && !m.has_params());
    let err = m.instantiate(params(&[("at", "soon")]), None).unwrap_err();
    assert!(
        matches!(&err, SmartModuleError::Init { message, .. } if message.contains("invalid digit")),
        "{err:?}"
    );
    let err = m.instantiate(params(&[("when", "1")]), None).unwrap_err();
    assert!(matches!(&err, SmartModuleError::Init { .. }), "{err:?}");
    let mut ok = m.instantiate(params(&[("at", "99")]), None).unwrap();
    assert_eq!(ok.process(&records(&["a", "b"])).unwrap().len(), 2);
}
