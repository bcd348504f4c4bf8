//! The idempotent producer end to end: a batch whose acknowledgement is lost
//! after it was committed is resent by the client and stored once.

use crate::harness::{Env, lines};

#[test]
fn a_batch_resent_after_its_ack_was_lost_is_stored_once() {
    let env = Env::with_ports_for(3);
    // Every 3rd committed produce goes unanswered (debug builds only).
    env.start_with_env(3, &[("SLUICE_DEBUG_DROP_PRODUCE_ACKS", "3")]);
    env.ok(&["topic", "create", "once", "-r", "3"]);
    let input = lines(300, "v");
    // Small batches, so there are many produce requests to lose answers of.
    // `produce` exits 0 only once every record was acknowledged.
    env.ok_with_input(
        &["produce", "once", "--batch-size", "64", "--linger", "0ms"],
        input.as_bytes(),
    );
    let dropped: usize = (1..=3)
        .map(|n| {
            std::fs::read_to_string(env.node_dir_of(n).join("node.log"))
                .unwrap()
                .matches("dropped the acknowledgement of a committed produce")
                .count()
        })
        .sum();
    assert!(
        dropped >= 10,
        "only {dropped} acknowledgements were dropped"
    );
    // Every record once, in order, on every replica.
    for replica in 1..=3 {
        let got = env.ok(&[
            "consume",
            "once",
            "-B",
            "-d",
            "--replica",
            &replica.to_string(),
        ]);
        assert_eq!(got, input, "replica {replica}");
    }
}
