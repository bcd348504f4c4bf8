//! The client crate's examples (`client/examples/`), run against a node:
//! an example that stops compiling or working fails here, not in a user's
//! hands. Each example keeps its work in a `run` function that its `main`
//! calls with a client made from the current profile; the test makes the
//! client the same way, from the profile `cluster start --local` wrote.

#[path = "../../../client/examples/admin.rs"]
#[allow(dead_code)]
mod admin;
#[path = "../../../client/examples/consume.rs"]
#[allow(dead_code)]
mod consume;
#[path = "../../../client/examples/produce.rs"]
#[allow(dead_code)]
mod produce;
#[path = "../../../client/examples/smartmodules.rs"]
#[allow(dead_code)]
mod smartmodules;

use sluice_client::Client;

use crate::harness::Env;

#[test]
fn the_produce_and_consume_examples_work_against_a_node() {
    let env = Env::started();
    env.ok(&["topic", "create", "greetings", "-p", "2"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = Client::from_profile(env.home.path(), None, None)
            .await
            .unwrap();
        let stored = produce::run(&client, "greetings").await.unwrap();
        assert_eq!(stored.len(), 10);
        // Same key, same partition, in order: user-0's records are 0, 3, 6, 9.
        let user_0: Vec<_> = [0, 3, 6, 9].iter().map(|i| stored[*i]).collect();
        assert!(user_0.iter().all(|(p, _)| *p == user_0[0].0), "{stored:?}");
        assert!(user_0.windows(2).all(|w| w[0].1 < w[1].1), "{stored:?}");
        let partition = user_0[0].0;
        let in_it = stored.iter().filter(|(p, _)| *p == partition).count();
        let read = consume::run(&client, "greetings", partition, Some(in_it))
            .await
            .unwrap();
        let values: Vec<_> = read
            .iter()
            .map(|r| String::from_utf8_lossy(&r.value).into_owned())
            .collect();
        assert!(values.contains(&"hello #0".to_string()), "{values:?}");
        assert!(values.contains(&"hello #9".to_string()), "{values:?}");
        let header = sluice_client::proto::RecordHeader::new("sent-by", "examples/produce");
        assert!(
            read.iter().all(|r| r.headers == [header.clone()]),
            "{read:?}"
        );
    });
}

#[test]
fn the_admin_and_smartmodule_examples_work_against_a_node() {
    let env = Env::started();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let wasm = crate::wasm_build::module_bytes("digits-filter");
    rt.block_on(async {
        let client = Client::from_profile(env.home.path(), None, None)
            .await
            .unwrap();

        let seen = admin::run(&client, "inventory").await.unwrap();
        assert_eq!(seen.nodes, 1);
        assert_eq!(seen.partitions_after_growing, 3);
        assert_eq!(seen.offset_in_new_partition, 0);
        let topics = client.list_topics().await.unwrap();
        assert!(topics.iter().all(|t| t.spec.name != "inventory"));

        let (registered, sent) = smartmodules::run(&client, wasm, "sm-example")
            .await
            .unwrap();
        assert_eq!(registered, ["hello", "sluice 1"]);
        assert_eq!(sent, registered);
        assert!(client.list_smartmodules().await.unwrap().is_empty());
    });
}
