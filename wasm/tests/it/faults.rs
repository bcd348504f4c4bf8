//! Misbehaving modules: each failure is typed, names the module and record, and leaves
//! other instances working.

use crate::{instance, load, params, records, values};
use sluice_wasm::{Engine, EngineConfig, SmartModuleError};
use std::time::{Duration, Instant};

fn engine_with(deadline: Duration, memory: usize) -> Engine {
    Engine::new(EngineConfig {
        call_deadline: deadline,
        memory_limit_bytes: memory,
        ..EngineConfig::default()
    })
    .unwrap()
}

#[test]
fn panic_on_record_n_is_a_trap_at_offset_n() {
    let e = crate::shared_engine();
    let mut i = load(&e, "test-panic")
        .instantiate(params(&[("at", "2")]), None)
        .unwrap();
    let err = i.process(&records(&["a", "b", "c", "d"])).unwrap_err();
    let SmartModuleError::Trap {
        module,
        offset,
        message,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(module, "test-panic");
    assert_eq!(*offset, Some(2));
    assert!(message.contains("record 2 is cursed"), "{message}");
    // The instance is not trusted afterwards; a new one is fine.
    assert!(matches!(
        i.process(&records(&["a"])),
        Err(SmartModuleError::Poisoned { .. })
    ));
    let mut fresh = load(&e, "test-panic")
        .instantiate(params(&[("at", "2")]), None)
        .unwrap();
    assert_eq!(fresh.process(&records(&["a", "b"])).unwrap().len(), 2);
}

#[test]
fn infinite_loop_stops_at_the_deadline_and_others_keep_working() {
    let deadline = Duration::from_millis(200);
    let e = engine_with(deadline, 64 << 20);
    let mut looping = instance(&e, "test-loop");
    let mut healthy = instance(&e, "hello-filter");
    let looper = std::thread::spawn(move || {
        let started = Instant::now();
        let err = looping.process(&records(&["x", "y"])).unwrap_err();
        (err, started.elapsed())
    });
    // While the loop spins on another thread, this instance keeps serving.
    let mut served = 0;
    while !looper.is_finished() {
        assert_eq!(
            values(&healthy.process(&records(&["a", "b"])).unwrap()),
            ["a"]
        );
        served += 1;
    }
    let (err, elapsed) = looper.join().unwrap();
    let SmartModuleError::Timeout {
        module,
        offset,
        deadline: d,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(module, "test-loop");
    assert_eq!(*offset, Some(0));
    assert_eq!(*d, deadline);
    assert!(elapsed >= deadline, "stopped early: {elapsed:?}");
    assert!(elapsed < deadline * 3, "stopped late: {elapsed:?}");
    assert!(served > 0);
    assert_eq!(values(&healthy.process(&records(&["a"])).unwrap()), ["a"]);
}

#[test]
fn memory_growth_past_the_limit_is_a_memory_limit_error() {
    let limit = 16 << 20;
    let e = engine_with(Duration::from_secs(5), limit);
    let mut i = instance(&e, "test-grow");
    let err = i.process(&records(&["x"])).unwrap_err();
    let SmartModuleError::MemoryLimit {
        module,
        offset,
        limit: l,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(module, "test-grow");
    assert_eq!(*offset, Some(0));
    assert_eq!(*l, limit);
    // Other instances of the same engine are unaffected.
    let mut healthy = instance(&e, "hello-filter");
    assert_eq!(values(&healthy.process(&records(&["a"])).unwrap()), ["a"]);
}

#[test]
fn output_larger_than_the_maximum_is_refused() {
    let e = Engine::new(EngineConfig {
        output_bytes_max: 1024,
        ..EngineConfig::default()
    })
    .unwrap();
    let mut i = instance(&e, "json-array-map");
    let big = format!("[{}]", vec!["\"xxxxxxxxxx\""; 200].join(","));
    let err = i.process(&records(&[&big])).unwrap_err();
    assert!(
        matches!(err, SmartModuleError::OutputTooLarge { max: 1024, bytes, .. } if bytes > 1024),
        "{err:?}"
    );
}
