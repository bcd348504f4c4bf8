//! The SmartModule-store workload: processes register modules with unique
//! names (`sm-<worker>-<n>`, each with its own bytes), delete some of their
//! own earlier ones, and list the store, one operation at a time. After the
//! heal every node is asked, alone, for its list; each module is downloaded
//! from it and hashed (`sm_list` with `final: true`), and every node runs one
//! registered filter over a small topic written at setup (`sm_consume`).
//!
//! Outcomes as in the log workload: `ok` on an answer, `fail` only when the
//! cluster definitely refused before anything could be proposed, `info`
//! otherwise; a process whose create or delete ends `info` is retired.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use sluice_client::proto::{
    FetchRequest, ProducerSeq, ReadFrom, Record as WireRecord, Request, Response,
    SmartModuleInvocation, SmartModuleSource, StartOffset, TopicSpec, WireError,
    limits::FETCH_RESPONSE_BYTES_DEFAULT,
};
use sluice_client::{Client, ClientError};
use tokio::time::{Instant, sleep, timeout};

use super::rng::Rng;
use super::workload::{Ctx, PRODUCER_ID_LOW_BITS, connect, connect_to};
use crate::history::{Call, Module, NodeId, Record, SmConsume, SmCreate, SmDelete, SmList};

/// The small topic the filters run over (one partition).
pub const SM_TOPIC: &str = "jepsen-sm";
/// How long one create or delete may keep retrying before it is `info`
/// (a create is compiled by the node to validate it: seconds on 2 busy cores).
const OP_TIMEOUT: Duration = Duration::from_secs(8);
/// Deadline of a list.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);
/// Records of [`SM_TOPIC`]: the `hello-filter` example keeps those with an `a`.
const INPUT: usize = 12;

fn input_values() -> Vec<String> {
    (0..INPUT)
        .map(|i| {
            if i % 2 == 0 {
                format!("apple-{i}")
            } else {
                format!("plum-{i}")
            }
        })
        .collect()
}

/// What the filter must let through.
fn expected_values() -> Vec<String> {
    input_values()
        .into_iter()
        .filter(|v| v.contains('a'))
        .collect()
}

/// SHA-256 of `bytes`, lower-case hex (what the node reports as the hash).
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn leb128(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// `base` with a custom section `sluice-jt` holding `name` appended: a custom
/// section is legal after any section, so the module stays the same program
/// with bytes (and hash) of its own.
pub fn with_name(base: &[u8], name: &str) -> Vec<u8> {
    let section_name = b"sluice-jt";
    let mut payload = Vec::new();
    leb128(section_name.len(), &mut payload);
    payload.extend_from_slice(section_name);
    payload.extend_from_slice(name.as_bytes());
    let mut out = base.to_vec();
    out.push(0);
    leb128(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}

/// The compiled `hello-filter` example: `$SLUICE_SM_WASM`, else
/// `<target>/smartmodules/wasm32-unknown-unknown/release/hello_filter.wasm`
/// (as the wasm crate's tests build it), built offline there if missing.
pub fn hello_filter() -> anyhow::Result<Vec<u8>> {
    if let Some(p) = std::env::var_os("SLUICE_SM_WASM") {
        return std::fs::read(&p).with_context(|| format!("cannot read $SLUICE_SM_WASM {p:?}"));
    }
    example_wasm("hello-filter")
}

/// The compiled SmartModule example `package` (a directory of
/// `examples/smartmodules`), from
/// `<target>/smartmodules/wasm32-unknown-unknown/release/`, built offline
/// there if missing.
pub fn example_wasm(package: &str) -> anyhow::Result<Vec<u8>> {
    // The repository is above the executable (target/ inside it) or above the
    // working directory (cargo runs tests in the package directory, and a
    // target dir elsewhere, as CI's, is not inside the repository).
    let exe = std::env::current_exe().context("cannot find the current executable")?;
    let cwd = std::env::current_dir().context("cannot find the working directory")?;
    let root = exe
        .ancestors()
        .chain(cwd.ancestors())
        .find(|d| d.join("examples/smartmodules/Cargo.toml").is_file())
        .map(Path::to_path_buf)
        .context("cannot find the repository (examples/smartmodules) above this executable or the working directory; set SLUICE_SM_WASM")?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("smartmodules");
    let file = format!("{}.wasm", package.replace('-', "_"));
    let path = target_dir.join("wasm32-unknown-unknown/release").join(file);
    if !path.is_file() {
        eprintln!(
            "building the {package} SmartModule into {}",
            target_dir.display()
        );
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let ok = std::process::Command::new(cargo)
            .args([
                "build",
                "--release",
                "--offline",
                "-p",
                package,
                "--target",
                "wasm32-unknown-unknown",
            ])
            .arg("--manifest-path")
            .arg(root.join("examples/smartmodules/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .status()
            .context("cannot run cargo")?
            .success();
        if !ok {
            bail!("building examples/smartmodules/{package} for wasm32-unknown-unknown failed");
        }
    }
    std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
}

/// What the SmartModule tasks share.
pub struct SmCtx {
    pub base: Vec<u8>,
    /// Modules acknowledged as created and never since asked to be deleted.
    live: Mutex<BTreeSet<String>>,
}

impl SmCtx {
    pub fn new(base: Vec<u8>) -> Self {
        SmCtx {
            base,
            live: Mutex::new(BTreeSet::new()),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The producer id of the setup's write to [`SM_TOPIC`]: from its own stream
/// of the run's seed (not the seed xor a constant, a shift of the other
/// streams), with the top bits 0, which no log writer's id has
/// ([`crate::run::workload::ProducerIds`]).
pub fn setup_producer_id(seed: u64) -> u64 {
    Rng::derive(seed, "sm-setup", 0).next_u64() >> (64 - PRODUCER_ID_LOW_BITS)
}

/// The generator of SmartModule worker `w` (its operations, victims and
/// pauses), its own stream of the run's seed ([`Rng::derive`]).
pub fn worker_rng(seed: u64, w: u32) -> Rng {
    Rng::derive(seed, "sm-worker", u64::from(w))
}

/// Creates [`SM_TOPIC`] and writes its records once (idempotently), then
/// registers `sm-setup` (recorded), which checks that the cluster accepts a
/// module built by [`with_name`].
pub async fn setup(ctx: &Ctx, sm: &SmCtx, replication: u32) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let producer_id = setup_producer_id(ctx.seed);
    loop {
        let attempt = async {
            let client = connect(&ctx.home).await?;
            let mut spec = TopicSpec::new(SM_TOPIC);
            spec.partitions = 1;
            spec.replication = replication;
            match client.create_topic(spec).await {
                Ok(_) => {}
                Err(e) if e.to_string().contains("already exists") => {}
                Err(e) => return Err(e.into()),
            }
            let records = input_values()
                .into_iter()
                .map(|v| WireRecord::new(v.into_bytes()))
                .collect();
            let seq = ProducerSeq {
                producer_id,
                sequence: 0,
            };
            client.produce_as(SM_TOPIC, 0, records, Some(seq)).await?;
            anyhow::Ok(())
        };
        match attempt.await {
            Ok(()) => break,
            Err(e) if Instant::now() > deadline => {
                return Err(e).context("cannot set up the SmartModule workload");
            }
            Err(_) => sleep(Duration::from_millis(500)).await,
        }
    }
    // The first registration (recorded like any other): the node must accept
    // the example with a custom section appended.
    let client = connect(&ctx.home).await?;
    let process = ctx.rec.new_process();
    let name = "sm-setup".to_string();
    let wasm = with_name(&sm.base, &name);
    let call = Call::SmCreate(SmCreate {
        name: name.clone(),
        hash: sha256_hex(&wasm),
    });
    ctx.rec.invoke(process, call.clone(), None);
    let outcome = admin_op(
        &client,
        Request::CreateSmartModule {
            name: name.clone(),
            wasm,
        },
    )
    .await;
    client.close().await;
    match outcome {
        AdminOutcome::Ok => {
            ctx.rec.ok(process, call, None);
            sm.live().insert(name);
            Ok(())
        }
        AdminOutcome::Fail(e) => {
            ctx.rec.fail(process, call, None, e.clone());
            bail!("the cluster refused the hello-filter SmartModule with a custom section: {e}")
        }
        AdminOutcome::Info(e) => {
            ctx.rec.info(process, call, None, e.clone());
            bail!("registering the first SmartModule did not finish: {e}")
        }
    }
}

enum AdminOutcome {
    Ok,
    Fail(String),
    Info(String),
}

/// What [`AdminOutcome::record`] wrote into the history.
#[derive(Debug, PartialEq, Eq)]
enum Recorded {
    Ok,
    Failed,
    /// `info`: the outcome is unknown, so the process must retire.
    Unknown,
}

impl AdminOutcome {
    /// Completes `call`, invoked by `process`, in the history.
    fn record(self, ctx: &Ctx, process: u64, call: Call) -> Recorded {
        match self {
            AdminOutcome::Ok => {
                ctx.rec.ok(process, call, None);
                Recorded::Ok
            }
            AdminOutcome::Fail(e) => {
                ctx.rec.fail(process, call, None, e);
                Recorded::Failed
            }
            AdminOutcome::Info(e) => {
                ctx.rec.info(process, call, None, e);
                Recorded::Unknown
            }
        }
    }
}

/// Refusals that no delivery of the request could have avoided: the node
/// validates before proposing, and validation gives the same answer every
/// time. Anything else may follow an earlier delivery: one call of
/// `Client::request` that meets a timeout or a lost connection sends the
/// request again to the next node, so even "already exists" (create) or
/// "unknown SmartModule" (delete) can be the answer to its own first copy.
fn refused(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Server(
            WireError::InvalidArgument { .. }
                | WireError::SmartModule { .. }
                | WireError::MalformedRequest { .. }
                | WireError::UnsupportedVersion { .. }
        )
    )
}

/// One create or delete, retried (the client's own retries are bypassed)
/// until [`OP_TIMEOUT`]: `ok` on success, `fail` on a refusal by validation,
/// `info` otherwise.
async fn admin_op(client: &Client, request: Request) -> AdminOutcome {
    // One request id for every attempt: the cluster applies the change once.
    let request = request.once();
    let deadline = Instant::now() + OP_TIMEOUT;
    let mut last = String::from("no attempt");
    let mut backoff = Duration::from_millis(50);
    loop {
        let now = Instant::now();
        if now >= deadline {
            return AdminOutcome::Info(format!("no answer within {OP_TIMEOUT:?}: {last}"));
        }
        match timeout(deadline - now, client.request(request.clone())).await {
            Ok(Ok(Response::SmartModuleCreated(_) | Response::SmartModuleDeleted)) => {
                return AdminOutcome::Ok;
            }
            Ok(Ok(other)) => {
                return AdminOutcome::Info(format!("unexpected response {other:?}"));
            }
            Ok(Err(e)) if refused(&e) => return AdminOutcome::Fail(e.to_string()),
            Ok(Err(e)) if !e.is_retriable() => return AdminOutcome::Info(e.to_string()),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "request still pending".into(),
        }
        sleep(backoff.min(deadline.saturating_duration_since(Instant::now()))).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

fn modules(list: &[sluice_client::proto::SmartModuleInfo]) -> Vec<Module> {
    let mut out: Vec<Module> = list
        .iter()
        .map(|m| Module {
            name: m.name.clone(),
            hash: m.hash.clone(),
        })
        .collect();
    out.sort();
    out
}

/// Worker `w`: creates (about 40% of the operations), deletes of its own
/// acknowledged modules (20%), and lists (40%), with a short pause between
/// operations.
pub async fn worker(ctx: Arc<Ctx>, sm: Arc<SmCtx>, w: u32) {
    let mut rng = worker_rng(ctx.seed, w);
    let mut counter = 0u64;
    // This worker's acknowledged modules not yet asked to be deleted.
    let mut mine: Vec<String> = Vec::new();
    while !ctx.stopped() {
        let client = match connect(&ctx.home).await {
            Ok(c) => c,
            Err(_) => {
                sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let process = ctx.rec.new_process();
        while !ctx.stopped() {
            let roll = rng.index(100);
            let retire = if roll < 20 && !mine.is_empty() {
                let name = mine.swap_remove(rng.index(mine.len()));
                sm.live().remove(&name);
                let call = Call::SmDelete(SmDelete { name: name.clone() });
                ctx.rec.invoke(process, call.clone(), None);
                let outcome = admin_op(&client, Request::DeleteSmartModule { name }).await;
                outcome.record(&ctx, process, call) == Recorded::Unknown
            } else if roll < 60 {
                let call = |modules| {
                    Call::SmList(SmList {
                        is_final: false,
                        modules,
                    })
                };
                ctx.rec.invoke(process, call(None), None);
                match timeout(LIST_TIMEOUT, client.list_smartmodules()).await {
                    Ok(Ok(list)) => ctx.rec.ok(process, call(Some(modules(&list))), None),
                    Ok(Err(e)) => ctx.rec.fail(process, call(None), None, e.to_string()),
                    Err(_) => ctx
                        .rec
                        .fail(process, call(None), None, "no answer in time".into()),
                }
                false
            } else {
                let name = format!("sm-{w}-{counter}");
                counter += 1;
                let wasm = with_name(&sm.base, &name);
                let call = Call::SmCreate(SmCreate {
                    name: name.clone(),
                    hash: sha256_hex(&wasm),
                });
                ctx.rec.invoke(process, call.clone(), None);
                let request = Request::CreateSmartModule {
                    name: name.clone(),
                    wasm,
                };
                match admin_op(&client, request).await.record(&ctx, process, call) {
                    Recorded::Ok => {
                        sm.live().insert(name.clone());
                        mine.push(name);
                        false
                    }
                    Recorded::Failed => false,
                    Recorded::Unknown => true,
                }
            };
            if retire {
                break;
            }
            sleep(Duration::from_millis(rng.range(100, 300))).await;
        }
        client.close().await;
    }
}

/// One module as a node holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Held {
    /// SHA-256 of the bytes downloaded from the node.
    pub hash: String,
    /// The hash the node lists.
    pub listed_hash: String,
    /// When the registration that the node holds was made (the serving
    /// node's clock, ms since the epoch).
    pub created_ms: i64,
}

/// A node's store as it answers alone.
async fn node_store(ctx: &Ctx, addr: SocketAddr) -> anyhow::Result<BTreeMap<String, Held>> {
    let client = connect_to(&ctx.home, Some(&addr.to_string())).await?;
    let result = async {
        let list = timeout(LIST_TIMEOUT, client.list_smartmodules())
            .await
            .context("list: no answer in time")??;
        let mut out = BTreeMap::new();
        for m in list {
            let (_, wasm) = timeout(LIST_TIMEOUT, client.download_smartmodule(&m.name))
                .await
                .with_context(|| format!("download {}: no answer in time", m.name))?
                .with_context(|| format!("download {}", m.name))?;
            let held = Held {
                hash: sha256_hex(&wasm),
                listed_hash: m.hash,
                created_ms: m.created_ms,
            };
            out.insert(m.name.clone(), held);
        }
        anyhow::Ok(out)
    }
    .await;
    client.close().await;
    result
}

/// Waits until every node's store (names and downloaded hashes) is the same
/// and has stayed the same for `QUIET`, or `within` passes. The quiet period
/// matters: a create whose client gave up (`info`) may still be applied a
/// little later, and final lists taken across that moment would differ
/// although no node diverges. Not recorded; [`final_lists`] follows.
pub async fn converge(ctx: &Ctx, nodes: &[(NodeId, SocketAddr)], within: Duration) -> bool {
    const QUIET: Duration = Duration::from_secs(3);
    let deadline = Instant::now() + within;
    let mut stable: Option<(Instant, Vec<BTreeMap<String, Held>>)> = None;
    loop {
        let mut stores = Vec::new();
        for (_, addr) in nodes {
            match node_store(ctx, *addr).await {
                Ok(s) => stores.push(s),
                Err(_) => break,
            }
        }
        if stores.len() == nodes.len() && stores.windows(2).all(|w| w[0] == w[1]) {
            match &stable {
                Some((since, seen)) if *seen == stores => {
                    if since.elapsed() >= QUIET {
                        return true;
                    }
                }
                _ => stable = Some((Instant::now(), stores)),
            }
        } else {
            stable = None;
        }
        if Instant::now() > deadline {
            return false;
        }
        sleep(Duration::from_secs(1)).await;
    }
}

/// The recorded final lists: each node alone lists its modules, each is
/// downloaded from it and hashed; the list records the hash of the bytes the
/// node holds. Returns each successful list in full (for
/// `smartmodules-final.json`). A listed hash that differs from the bytes' is
/// reported in `problems`.
pub async fn final_lists(
    ctx: &Ctx,
    nodes: &[(NodeId, SocketAddr)],
    problems: &mut Vec<String>,
) -> BTreeMap<NodeId, BTreeMap<String, Held>> {
    let mut out = BTreeMap::new();
    for &(n, addr) in nodes {
        let process = ctx.rec.new_drain_process();
        let call = |modules| {
            Call::SmList(SmList {
                is_final: true,
                modules,
            })
        };
        ctx.rec.invoke(process, call(None), Some(n));
        let mut last = String::new();
        let mut done = false;
        for _ in 0..3 {
            match node_store(ctx, addr).await {
                Ok(store) => {
                    for (name, held) in &store {
                        if held.hash != held.listed_hash {
                            problems.push(format!(
                                "node {n} lists SmartModule {name} with hash {}, but its bytes hash to {}",
                                held.listed_hash, held.hash
                            ));
                        }
                    }
                    let modules = store
                        .iter()
                        .map(|(name, held)| Module {
                            name: name.clone(),
                            hash: held.hash.clone(),
                        })
                        .collect();
                    ctx.rec.ok(process, call(Some(modules)), Some(n));
                    out.insert(n, store);
                    done = true;
                    break;
                }
                Err(e) => last = format!("{e:#}"),
            }
            sleep(Duration::from_secs(1)).await;
        }
        if !done {
            ctx.rec.info(process, call(None), Some(n), last);
        }
    }
    out
}

/// Every record of [`SM_TOPIC`] on `node`'s replica, through `module`.
async fn filtered_read(client: &Client, node: NodeId, module: &str) -> anyhow::Result<Vec<Record>> {
    let req = FetchRequest {
        topic: SM_TOPIC.to_string(),
        partition: 0,
        start: StartOffset::Beginning,
        end_offset: None,
        max_records: None,
        follow: false,
        max_bytes: FETCH_RESPONSE_BYTES_DEFAULT as u32,
        read_from: ReadFrom::Any,
        replica: Some(u64::from(node)),
        smartmodules: vec![SmartModuleInvocation {
            module: SmartModuleSource::Registered(module.to_string()),
            kind: None,
            params: BTreeMap::new(),
            initial: None,
        }],
    };
    let mut stream = client.fetch(req).await?;
    let mut out = Vec::new();
    while let Some(batch) = stream.next_batch().await? {
        out.extend(
            batch
                .iter()
                .map(|r| Record::new(r.offset, String::from_utf8_lossy(&r.value))),
        );
    }
    Ok(out)
}

/// After the final lists: every node whose list succeeded and that holds a
/// replica of [`SM_TOPIC`] runs one module it listed (the same on every node
/// when one is live everywhere) over it, through a client of that node only.
pub async fn final_consumes(
    ctx: &Ctx,
    sm: &SmCtx,
    nodes: &[(NodeId, SocketAddr)],
    listed: &BTreeMap<NodeId, BTreeMap<String, Held>>,
) {
    let live = sm.live().clone();
    let everywhere = live
        .iter()
        .find(|name| !listed.is_empty() && listed.values().all(|l| l.contains_key(*name)))
        .cloned();
    let mut holders: Option<BTreeSet<NodeId>> = None;
    if let Ok(client) = connect(&ctx.home).await {
        if let Ok(Ok(ps)) = timeout(LIST_TIMEOUT, client.list_partitions(Some(SM_TOPIC))).await {
            holders = ps
                .iter()
                .find(|p| p.partition == 0)
                .map(|p| p.replicas.iter().map(|r| r.node as NodeId).collect());
        }
        client.close().await;
    }
    for &(n, addr) in nodes {
        let Some(names) = listed.get(&n) else {
            continue;
        };
        if holders.as_ref().is_some_and(|h| !h.contains(&n)) {
            continue;
        }
        let module = match &everywhere {
            Some(m) => m.clone(),
            None => match live.iter().find(|m| names.contains_key(*m)) {
                Some(m) => m.clone(),
                None => continue,
            },
        };
        let process = ctx.rec.new_drain_process();
        let call = |records| {
            Call::SmConsume(SmConsume {
                module: module.clone(),
                topic: SM_TOPIC.to_string(),
                partition: 0,
                expect: expected_values(),
                records,
            })
        };
        ctx.rec.invoke(process, call(None), Some(n));
        let mut last = String::new();
        let mut got = None;
        for _ in 0..3 {
            let attempt = async {
                let client = connect_to(&ctx.home, Some(&addr.to_string())).await?;
                let r = timeout(Duration::from_secs(10), filtered_read(&client, n, &module))
                    .await
                    .context("no answer in 10 s");
                client.close().await;
                r?
            };
            match attempt.await {
                Ok(rs) => {
                    got = Some(rs);
                    break;
                }
                Err(e) => last = format!("{e:#}"),
            }
            sleep(Duration::from_secs(1)).await;
        }
        match got {
            Some(rs) => ctx.rec.ok(process, call(Some(rs)), Some(n)),
            None => ctx.rec.fail(process, call(None), Some(n), last),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_section_is_well_formed() {
        let base = b"\0asm\x01\0\0\0".to_vec();
        let m = with_name(&base, "sm-1-2");
        // id 0, size, name length, "sluice-jt", payload.
        assert_eq!(m[8], 0);
        assert_eq!(m[9] as usize, 1 + 9 + 6);
        assert_eq!(m[10], 9);
        assert_eq!(&m[11..20], b"sluice-jt");
        assert_eq!(&m[20..], b"sm-1-2");
        assert_ne!(sha256_hex(&m), sha256_hex(&with_name(&base, "sm-1-3")));
    }

    #[test]
    fn leb128_encodes_multibyte() {
        let mut v = Vec::new();
        leb128(300, &mut v);
        assert_eq!(v, vec![0xac, 0x02]);
    }

    /// The setup's producer id is in the id space no log writer uses (top
    /// bits 0) and replays with the seed.
    #[test]
    fn the_setup_producer_id_is_no_writers_and_replays() {
        let mut seen = std::collections::HashSet::new();
        for seed in 0..100 {
            let id = setup_producer_id(seed);
            assert_eq!(id >> PRODUCER_ID_LOW_BITS, 0, "seed {seed}: {id:#x}");
            assert_eq!(id, setup_producer_id(seed));
            seen.insert(id);
        }
        assert_eq!(seen.len(), 100, "seeds share a setup producer id");
    }
}
