//! The idempotent producer end to end: a batch whose acknowledgement is lost
//! after it was committed is resent by the client and stored once. And a
//! metadata change resent under its request id is applied once.

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

/// A metadata change resent under the request id it was first sent with (its
/// answer lost) is answered as the first was and not applied again: the
/// node serves it through a controller handle tagged with that id.
/// Sends the creation of `spec` under request id `id` twice, then under
/// another id: the resend must get the first answer (created), the other
/// id is a new change, told the topic exists.
fn create_resent_and_repeated(env: &Env, spec: sluice_proto::TopicSpec, id: [u64; 2]) {
    use sluice_proto::{MetadataChange, Request, Response, WireError, codec};

    use crate::bad_input::{ask_raw, raw_connection};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conn = raw_connection(env).await;
        let create = |id| {
            codec::encode(&Request::Once {
                id,
                change: MetadataChange::CreateTopic(spec.clone()),
            })
            .unwrap()
        };
        let first = ask_raw(conn.clone(), create(id)).await;
        assert!(matches!(first, Response::TopicCreated(_)), "{first:?}");
        let resent = ask_raw(conn.clone(), create(id)).await;
        assert!(
            matches!(resent, Response::TopicCreated(_)),
            "a resend under the same id must get the first answer: {resent:?}"
        );
        let again = ask_raw(conn.clone(), create([id[0], id[1] + 1])).await;
        assert!(
            matches!(again, Response::Error(WireError::TopicExists { .. })),
            "another creation of the same name is told it exists: {again:?}"
        );
    });
}

#[test]
fn a_metadata_change_resent_under_its_id_is_applied_once() {
    let env = Env::started();
    create_resent_and_repeated(&env, sluice_proto::TopicSpec::new("once-only"), [7, 7]);
    env.ok_with_input(&["produce", "once-only"], b"x\n");
    assert_eq!(env.ok(&["consume", "once-only", "-B", "-d"]), "x\n");
}

/// A topic creation resent under its id is answered as created even when
/// the topic's own replicas would not fit twice on a node: the checks made
/// before proposing a new topic (here the per-node replica bound) used to run
/// first and refused the resend for the replicas its first try had placed
/// (seen when a 1,000-partition topic took longer than the client's deadline
/// to be answered).
#[test]
fn a_large_topic_creation_resent_under_its_id_is_answered_as_created() {
    use sluice_proto::limits::PARTITION_REPLICAS_PER_NODE_MAX;
    let env = Env::started();
    let mut spec = sluice_proto::TopicSpec::new("more-than-half");
    spec.partitions = u32::try_from(PARTITION_REPLICAS_PER_NODE_MAX / 2 + 8).unwrap();
    create_resent_and_repeated(&env, spec, [9, 9]);
}

/// A write committed but unanswered (its answer lost), sent by a client that
/// knows a second node: the error says the connection was lost, so the
/// write may be stored, and not that no node answers, which would say
/// nothing was sent (the second node is dead); nor is the write sent to
/// that node, which could store it twice. A fault run's writer once took a
/// written record for a failed one this way (RELIABILITY.md, session 26).
#[test]
fn a_write_whose_answer_was_lost_is_reported_as_maybe_written() {
    use std::time::Duration;

    use sluice_client::{ClientError, ConnectOptions, proto::Record};

    let env = Env::with_ports_for(1);
    env.start_with_env(1, &[("SLUICE_DEBUG_DROP_PRODUCE_ACKS", "1")]);
    env.ok(&["topic", "create", "lost-answer"]);
    let dead_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    crate::harness::runtime().block_on(async {
        let options = ConnectOptions {
            connect_timeout: Duration::from_millis(500),
            ..ConnectOptions::default()
        };
        let endpoints = format!("127.0.0.1:{},127.0.0.1:{dead_port}", env.port);
        let client = sluice_client::Client::connect_with(
            &endpoints,
            &env.ca_pem(),
            Some(env.admin_identity()),
            options,
        )
        .await
        .unwrap();
        let e = client
            .produce("lost-answer", 0, vec![Record::new(b"kept".to_vec())])
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::ConnectionLost { .. }), "{e}");
    });
    assert_eq!(env.ok(&["consume", "lost-answer", "-B", "-d"]), "kept\n");
}
