//! SmartModules applied by the SPU on consume: the seed scenarios and bad
//! modules, through the CLI against real nodes.

use std::time::Duration;

use crate::harness::Env;

use crate::harness::module;

#[test]
fn the_seed_scenarios_run_in_the_spu() {
    let env = Env::started();
    for t in ["accounts", "events", "messages", "arrays", "numbers"] {
        env.ok(&["topic", "create", t]);
    }

    // 1. SSNs never leave the node.
    let accounts =
        "{\"name\":\"Ann\",\"ssn\":\"123-45-6789\"}\n{\"name\":\"Bob\",\"note\":\"no ssn\"}\n";
    env.ok_with_input(&["produce", "accounts"], accounts.as_bytes());
    let scrubbed = env.ok(&[
        "consume",
        "accounts",
        "-B",
        "-d",
        "--map",
        &module("ssn-scrub"),
    ]);
    assert_eq!(
        scrubbed,
        "{\"name\":\"Ann\",\"ssn\":\"***-**-****\"}\n{\"name\":\"Bob\",\"note\":\"no ssn\"}\n"
    );

    // The same module in the producer: the SSN never reaches the cluster.
    env.ok(&["topic", "create", "accounts-clean"]);
    env.ok_with_input(
        &["produce", "accounts-clean", "--map", &module("ssn-scrub")],
        accounts.as_bytes(),
    );
    assert_eq!(env.ok(&["consume", "accounts-clean", "-B", "-d"]), scrubbed);

    // 2. Parameters per consumer; none means unchanged.
    let event =
        r#"{"type":"login","account_id":"acct-1","timestamp":1700000000,"user_client":"mobile"}"#;
    env.ok_with_input(&["produce", "events"], format!("{event}\n").as_bytes());
    let hidden = env.ok(&[
        "consume",
        "events",
        "-B",
        "-d",
        "--map",
        &module("user-events"),
        "-e",
        "show_account_id=false",
        "-e",
        "show_user_client=false",
    ]);
    assert_eq!(hidden, "{\"type\":\"login\",\"timestamp\":1700000000}\n");
    // The same through a transforms file, Fluvio's YAML.
    // Module files it names sit beside it.
    let transforms = env.home.path().join("transforms.yaml");
    std::fs::copy(
        module("user-events"),
        env.home.path().join("user-events.wasm"),
    )
    .unwrap();
    let yaml = "transforms:\n  - uses: user-events.wasm\n    with:\n      show_account_id: false\n      show_user_client: \"false\"\n";
    std::fs::write(&transforms, yaml).unwrap();
    let via_file = env.ok(&[
        "consume",
        "events",
        "-B",
        "-d",
        "-t",
        &transforms.display().to_string(),
    ]);
    assert_eq!(via_file, hidden);
    let unchanged = env.ok(&[
        "consume",
        "events",
        "-B",
        "-d",
        "--map",
        &module("user-events"),
    ]);
    assert_eq!(unchanged, format!("{event}\n"));
    let err = env.fails(
        &[
            "consume",
            "events",
            "-B",
            "-d",
            "--map",
            &module("user-events"),
            "-e",
            "show_colour=false",
        ],
        b"",
    );
    assert!(
        err.contains("show_colour"),
        "an unknown parameter is named: {err}"
    );

    // 4. Keep only messages that are not all digits (seed 004).
    env.ok_with_input(&["produce", "messages"], b"hello\n12345\nabc123\n42\n");
    let kept = env.ok(&[
        "consume",
        "messages",
        "-B",
        "-d",
        "--filter",
        &module("digits-filter"),
    ]);
    assert_eq!(kept, "hello\nabc123\n");

    // The same filter given as Rust source, compiled on the fly (seed 004).
    let source = env.home.path().join("not_all_digits.rs");
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/smartmodules/digits-filter/src/lib.rs");
    std::fs::copy(example, &source).unwrap();
    let inline = env.ok(&[
        "consume",
        "messages",
        "-B",
        "-d",
        "--filter",
        &source.display().to_string(),
    ]);
    assert_eq!(inline, "hello\nabc123\n");

    // 5. One record per element of a JSON array.
    env.ok_with_input(
        &["produce", "arrays"],
        b"[\"a\",\"b\",\"c\"]\n[]\n[\"d\"]\n",
    );
    let elements = env.ok(&[
        "consume",
        "arrays",
        "-B",
        "-d",
        "--array-map",
        &module("json-array-map"),
    ]);
    assert_eq!(elements, "\"a\"\n\"b\"\n\"c\"\n\"d\"\n");

    // 6. A running sum from an initial value; chained after a filter-free map of nothing.
    env.ok_with_input(&["produce", "numbers"], b"1\n2\n3\n4\n");
    let sums = env.ok(&[
        "consume",
        "numbers",
        "-B",
        "-d",
        "--aggregate",
        &module("sum-aggregate"),
        "--initial",
        "10",
    ]);
    assert_eq!(sums, "11\n13\n16\n20\n");

    // A chain: keep the not-all-digits messages, then (smartmodule-path, kind
    // read from the module) turn a JSON array into elements.
    let chained = env.ok(&[
        "consume",
        "arrays",
        "-B",
        "-d",
        "--filter",
        &module("digits-filter"),
        "--smartmodule-path",
        &module("json-array-map"),
    ]);
    assert_eq!(chained, "\"a\"\n\"b\"\n\"c\"\n\"d\"\n");
}

#[test]
fn bad_modules_fail_their_stream_only() {
    let env = Env::started();
    env.ok(&["topic", "create", "t"]);
    let input: String = (0..20).map(|i| format!("r{i}\n")).collect();
    env.ok_with_input(&["produce", "t"], input.as_bytes());

    // Not wasm at all.
    let bogus = env.home.path().join("bogus.wasm");
    std::fs::write(&bogus, b"not a module").unwrap();
    let err = env.fails(
        &[
            "consume",
            "t",
            "-B",
            "-d",
            "--filter",
            &bogus.display().to_string(),
        ],
        b"",
    );
    // Refused by the CLI before anything is sent.
    assert!(err.contains("is not a WebAssembly module"), "{err}");

    // A module used under the flag of another kind.
    let err = env.fails(
        &[
            "consume",
            "t",
            "-B",
            "-d",
            "--map",
            &module("digits-filter"),
        ],
        b"",
    );
    assert!(
        err.contains("filter") && err.contains("map"),
        "the kinds are named: {err}"
    );

    // A module that panics on record 7: the consumer gets 0..7, then an error
    // naming the module and the offset.
    let out = env.run(
        &[
            "consume",
            "t",
            "-B",
            "-d",
            "--filter",
            &module("test-panic"),
            "-e",
            "at=7",
        ],
        b"",
    );
    assert!(!out.status.success());
    let got = String::from_utf8(out.stdout).unwrap();
    assert_eq!(got, (0..7).map(|i| format!("r{i}\n")).collect::<String>());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("test_panic") && err.contains("at offset 7"),
        "module and offset are named: {err}"
    );

    // An infinite loop is stopped at the deadline and fails only its own
    // stream: a consumer following the topic meanwhile keeps streaming.
    let (mut follower, rx) = env.follow(&["consume", "t", "-B"]);
    for _ in 0..20 {
        rx.recv_timeout(Duration::from_secs(20))
            .expect("the follower reads the topic");
    }
    let err = env.fails(
        &["consume", "t", "-B", "-d", "--filter", &module("test-loop")],
        b"",
    );
    assert!(
        err.contains("deadline") || err.contains("time"),
        "the loop is reported: {err}"
    );
    env.ok_with_input(&["produce", "t"], b"after-the-loop\n");
    let next = rx.recv_timeout(Duration::from_secs(10));
    follower.kill().unwrap();
    follower.wait().unwrap();
    assert_eq!(next.unwrap(), "after-the-loop");

    // Memory growth past the limit.
    let err = env.fails(
        &["consume", "t", "-B", "-d", "--filter", &module("test-grow")],
        b"",
    );
    assert!(err.contains("memory"), "{err}");

    // The node still serves plain consumers.
    assert!(env.ok(&["consume", "t", "-B", "-d"]).starts_with("r0\n"));
}

#[test]
fn a_registered_module_reaches_every_spu_even_one_that_was_down() {
    let env = Env::started_with(3);
    env.ok(&["topic", "create", "messages", "-r", "3"]);
    env.ok_with_input(&["produce", "messages"], b"hello\n12345\nabc123\n42\n");

    // Register while node 3 is down; it learns the module when it returns.
    env.kill(3);
    let created = env.ok(&[
        "smart-module",
        "create",
        "my-filter",
        "--wasm-file",
        &module("digits-filter"),
    ]);
    assert!(created.contains("my-filter"), "{created}");
    let listed = env.ok(&["smart-module", "list"]);
    assert!(
        listed.contains("my-filter") && listed.contains("filter"),
        "{listed}"
    );
    // The same bytes again (a script re-running its setup): fine, and
    // nothing changes; other bytes under the name: refused.
    env.ok(&[
        "smart-module",
        "create",
        "my-filter",
        "--wasm-file",
        &module("digits-filter"),
    ]);
    assert_eq!(env.ok(&["smart-module", "list"]), listed);
    let err = env.fails(
        &[
            "smart-module",
            "create",
            "my-filter",
            "--wasm-file",
            &module("hello-filter"),
        ],
        b"",
    );
    assert!(err.contains("already exists"), "{err}");
    let bogus = env.home.path().join("bogus.wasm");
    std::fs::write(&bogus, b"\0asm garbage").unwrap();
    let err = env.fails(
        &[
            "sm",
            "create",
            "bogus",
            "--wasm-file",
            &bogus.display().to_string(),
        ],
        b"",
    );
    assert!(
        err.contains("WebAssembly"),
        "a malformed module is rejected with the reason: {err}"
    );

    env.start();
    // Served by node 3 from its own copy of the store (once it has caught up).
    let mut filtered = String::new();
    crate::harness::wait_until(Duration::from_secs(30), || {
        let out = env.run(
            &[
                "consume",
                "messages",
                "-B",
                "-d",
                "--filter",
                "my-filter",
                "--replica",
                "3",
            ],
            b"",
        );
        filtered = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.success() && filtered == "hello\nabc123\n"
    });
    for node in ["1", "2"] {
        let out = env.ok(&[
            "consume",
            "messages",
            "-B",
            "-d",
            "--smartmodule",
            "my-filter",
            "--replica",
            node,
        ]);
        assert_eq!(out, "hello\nabc123\n", "served by node {node}");
    }

    // Deleting a module a stream is using: that stream keeps its instance
    // and goes on filtering; new streams can no longer name the module.
    let (mut follower, rx) = env.follow(&["consume", "messages", "-B", "--filter", "my-filter"]);
    for want in ["hello", "abc123"] {
        assert_eq!(rx.recv_timeout(Duration::from_secs(20)).unwrap(), want);
    }
    env.ok(&["smart-module", "delete", "my-filter"]);
    env.ok_with_input(&["produce", "messages"], b"777\nstill-filtered\n");
    let next = rx.recv_timeout(Duration::from_secs(10));
    follower.kill().unwrap();
    follower.wait().unwrap();
    assert_eq!(
        next.unwrap(),
        "still-filtered",
        "the running stream kept the deleted module"
    );
    let err = env.fails(
        &["consume", "messages", "-B", "-d", "--filter", "my-filter"],
        b"",
    );
    assert!(err.contains("SmartModule not found"), "{err}");
    assert!(!env.ok(&["smart-module", "list"]).contains("my-filter"));
}

/// A filtered read spanning many response chunks (the node reads the next
/// chunk while the module runs over the current one) delivers exactly what a
/// plain read filtered here would, also when it stops at `--end` or `--head`;
/// plain reads of the same chunks start and stop where asked.
#[test]
fn a_filtered_read_over_many_chunks_matches_a_local_filter() {
    let env = Env::started();
    env.ok(&["topic", "create", "big"]);
    // ~3.3 MB: more than three 1 MiB chunks. Padding `x` has no `a`, so
    // `hello-filter` keeps exactly the lines that carry one.
    let lines: Vec<String> = (0..3000)
        .map(|i| {
            let mark = if i % 7 == 0 { "a" } else { "x" };
            format!("{i:05}{mark}{}", "x".repeat(1100))
        })
        .collect();
    env.ok_with_input(
        &["produce", "big"],
        format!("{}\n", lines.join("\n")).as_bytes(),
    );
    let kept = |last: usize| -> Vec<&str> {
        lines[..=last]
            .iter()
            .filter(|l| l.contains('a'))
            .map(String::as_str)
            .collect()
    };
    let filter = module("hello-filter");
    let read = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["consume", "big", "-d", "--filter", &filter];
        args.extend_from_slice(extra);
        env.ok(&args).lines().map(str::to_string).collect()
    };
    assert_eq!(read(&["-B"]), kept(2999));
    assert_eq!(read(&["-B", "--end", "2000"]), kept(2000));
    // `--head N` counts the records delivered, after the filter.
    let head = read(&["--head", "100"]);
    assert_eq!(head, kept(2999)[..100]);

    // Unfiltered reads over the same chunks, cut inside batches.
    let plain = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["consume", "big", "-d"];
        all.extend_from_slice(args);
        env.ok(&all).lines().map(str::to_string).collect()
    };
    assert_eq!(plain(&["-B"]), lines);
    assert_eq!(
        plain(&["--start", "123", "--end", "2345"]),
        lines[123..=2345]
    );
    assert_eq!(plain(&["--head", "1234"]), lines[..1234]);
    assert_eq!(plain(&["-T", "7"]), lines[2993..]);
}

/// `v` as unsigned LEB128.
fn leb(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A WebAssembly section: id, size, contents.
fn section(id: u8, contents: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    leb(contents.len() as u64, out);
    out.extend_from_slice(contents);
}

/// The classic compile bomb, about 60 KiB: one function declaring 50,000
/// locals, 6,000 of them incremented inside 20 nested loops. Compiled, it
/// would take Cranelift minutes and gigabytes.
fn locals_bomb() -> Vec<u8> {
    let mut code = Vec::new();
    leb(1, &mut code); // one locals declaration:
    leb(50_000, &mut code); // 50,000
    code.push(0x7f); // i32
    code.extend_from_slice(&[0x03, 0x40].repeat(20)); // loop x 20
    for i in 0..6_000 {
        code.push(0x20); // local.get i
        leb(i, &mut code);
        code.extend_from_slice(&[0x41, 0x01, 0x6a]); // i32.const 1, i32.add
        code.push(0x21); // local.set i
        leb(i, &mut code);
    }
    code.extend_from_slice(&[0x0b].repeat(21)); // end x 20, end of the function
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[1, 0x60, 0, 0], &mut bytes); // one type: () -> ()
    section(3, &[1, 0], &mut bytes); // one function of type 0
    let mut body = Vec::new();
    leb(1, &mut body); // one body
    leb(code.len() as u64, &mut body);
    body.extend_from_slice(&code);
    section(10, &body, &mut bytes);
    bytes
}

/// A module of `len` bytes: the header, then a custom section of padding.
fn padded_module(len: usize) -> Vec<u8> {
    let mut contents = Vec::new();
    leb(3, &mut contents);
    contents.extend_from_slice(b"pad");
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    let header = 8 + 1 + 4; // magic and version, section id, 4-byte size
    contents.resize(len - header, 0);
    bytes.push(0);
    leb(contents.len() as u64, &mut bytes);
    bytes.extend_from_slice(&contents);
    bytes
}

/// A compile bomb is refused, before compiling, whether registered or sent
/// ad hoc; so is a module over the size limit, either way (an ad-hoc one of
/// 12 MiB used to be compiled though the registry refused 8 MiB). The node
/// keeps serving, modules included.
#[test]
fn compile_bombs_and_oversized_modules_are_refused_before_compiling() {
    use std::time::Instant;
    let env = Env::started();
    env.ok(&["topic", "create", "t"]);
    env.ok_with_input(&["produce", "t"], b"123\nabc\n");
    let bomb = env.home.path().join("bomb.wasm");
    std::fs::write(&bomb, locals_bomb()).unwrap();
    let bomb = bomb.display().to_string();
    let big = env.home.path().join("big.wasm");
    std::fs::write(&big, padded_module(12 * 1024 * 1024)).unwrap();
    let big = big.display().to_string();

    let started = Instant::now();
    let err = env.fails(
        &["smart-module", "create", "bomb", "--wasm-file", &bomb],
        b"",
    );
    assert!(
        err.contains("bomb")
            && err.contains("50000 locals")
            && err.contains("SMARTMODULE_LOCALS_PER_FUNCTION_MAX"),
        "names the module and the limit: {err}"
    );
    let err = env.fails(&["consume", "t", "-B", "-d", "--filter", &bomb], b"");
    assert!(
        err.contains("SMARTMODULE_LOCALS_PER_FUNCTION_MAX"),
        "ad hoc too: {err}"
    );
    // Two CLI runs against the node; compiling the bomb would take minutes.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(!env.ok(&["smart-module", "list"]).contains("bomb"));

    for command in [
        vec!["consume", "t", "-B", "-d", "--filter", &big],
        vec!["smart-module", "create", "big", "--wasm-file", &big],
    ] {
        let err = env.fails(&command, b"");
        assert!(
            err.contains("12582912 bytes") && err.contains("SMARTMODULE_SIZE_BYTES_MAX"),
            "`{}` is refused by size: {err}",
            command.join(" ")
        );
    }

    // The node still serves, and still compiles modules that fit.
    env.ok_with_input(&["produce", "t"], b"def\n");
    assert_eq!(env.ok(&["consume", "t", "-B", "-d"]), "123\nabc\ndef\n");
    assert_eq!(
        env.ok(&[
            "consume",
            "t",
            "-B",
            "-d",
            "--filter",
            &module("digits-filter")
        ]),
        "abc\ndef\n"
    );
}

/// `--lookback-last N`: before the stream starts, a module's `look_back`
/// function sees the partition's last N records, so a running maximum
/// started at the end of the topic already knows the maximum so far.
#[test]
fn look_back_shows_a_module_the_last_records_before_the_stream() {
    use crate::harness::{sample, scrape, wait_until};
    let env = Env::started();
    env.ok(&["topic", "create", "numbers"]);
    env.ok_with_input(&["produce", "numbers"], b"5\n9\n3\n");
    let max = module("look-back-max");
    env.ok(&["smart-module", "create", "max", "--wasm-file", &max]);
    // Without looking back, a stream from the start passes each new maximum.
    assert_eq!(
        env.ok(&["consume", "numbers", "-B", "-d", "--smartmodule", "max"]),
        "5\n9\n"
    );
    // From the end, looking back at the last 3: the maximum is 9 already.
    let (mut follower, rx) = env.follow(&[
        "consume",
        "numbers",
        "--smartmodule",
        "max",
        "--lookback-last",
        "3",
    ]);
    // The stream has started once the module has been shown the 3 records
    // (the stream before showed it the other 3).
    let labels = ["module=\"max\""];
    wait_until(Duration::from_secs(20), || {
        let body = scrape(env.port).unwrap_or_default();
        sample(&body, "sluice_smartmodule_records_in_total", &labels) == Some(6.0)
    });
    env.ok_with_input(&["produce", "numbers"], b"7\n10\n8\n12\n");
    for want in ["10", "12"] {
        assert_eq!(rx.recv_timeout(Duration::from_secs(20)).unwrap(), want);
    }
    follower.kill().unwrap();
    follower.wait().unwrap();
    // Looking back at records the module refuses fails the stream, naming one.
    env.ok_with_input(&["produce", "numbers"], b"lots\n");
    let e = env.fails(
        &[
            "consume",
            "numbers",
            "-d",
            "--smartmodule",
            "max",
            "--lookback-last",
            "2",
        ],
        b"",
    );
    assert!(
        e.contains("look_back") && e.contains("\"lots\" is not a number"),
        "{e}"
    );
    // A chain without a look_back function, or no module at all, is refused.
    let e = env.fails(
        &[
            "consume",
            "numbers",
            "-d",
            "--filter",
            &module("digits-filter"),
            "--lookback-last",
            "2",
        ],
        b"",
    );
    assert!(e.contains("has a look_back function"), "{e}");
    let e = env.fails(&["consume", "numbers", "-d", "--lookback-age", "1h"], b"");
    assert!(e.contains("give the module too"), "{e}");
    // The same check offline: smart-module test shows --record values first.
    for (text, want) in [("111", ""), ("444", "444\n")] {
        let out = env.ok(&[
            "smart-module",
            "test",
            "--wasm-file",
            &max,
            "--lookback-last",
            "1",
            "--record",
            "222",
            "--record",
            "333",
            "--text",
            text,
        ]);
        assert_eq!(out, want, "{text}");
    }
}
