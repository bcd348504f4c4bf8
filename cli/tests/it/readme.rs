//! README.md's shell blocks, pasted in order as a new user would, against a
//! local cluster started by the README's own commands: every command must
//! work as written. Skipped, each with its reason: installing packages and
//! building the binary (the test runs the `sluice` it was built with), the
//! wasm32 build of the example modules (the suite builds them once, and `W`
//! points there), where the repository's scripts are (`S`: the test sets it,
//! the README runs in a scratch directory), and what needs other machines
//! (the multi-host example).
//! A `consume` that follows (no `-d`) runs for a few seconds and is stopped
//! with Ctrl-C, as a user would.
//!
//! The README's local cluster listens on its default ports (9003 and up):
//! the test refuses to start if they are taken (a local cluster of yours).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::SLUICE;

/// One command of a shell block: `\`-continued lines joined.
struct Line {
    /// The README line it starts on (1-based).
    at: usize,
    text: String,
}

fn shell_lines(readme: &str) -> Vec<Line> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut pending: Option<Line> = None;
    for (i, raw) in readme.lines().enumerate() {
        let trimmed = raw.trim_end();
        if trimmed.starts_with("```") {
            in_block = trimmed == "```sh";
            continue;
        }
        if !in_block {
            continue;
        }
        let (body, continued) = match trimmed.strip_suffix('\\') {
            Some(b) => (b, true),
            None => (trimmed, false),
        };
        let line = match pending.take() {
            Some(mut p) => {
                p.text.push(' ');
                p.text.push_str(body.trim());
                p
            }
            None => Line {
                at: i + 1,
                text: body.trim().to_string(),
            },
        };
        if continued {
            pending = Some(line);
        } else if !line.text.is_empty() && !line.text.starts_with('#') {
            out.push(line);
        }
    }
    out
}

enum Plan {
    Run,
    /// Runs until stopped with Ctrl-C.
    Follow,
    Skip(&'static str),
}

fn plan(command: &str) -> Plan {
    let has = |s: &str| command.contains(s);
    if has("apt-get install") {
        Plan::Skip("installs packages (scripts/test.sh does it for the suite)")
    } else if has("cargo install") {
        Plan::Skip("builds and installs sluice: the test runs the binary it was built with")
    } else if has("rustup target add") {
        Plan::Skip("scripts/test.sh adds the wasm32 target")
    } else if has("cargo build") && has("examples/smartmodules") {
        Plan::Skip("the suite builds these modules once; W points at them")
    } else if command.starts_with("W=") {
        Plan::Skip("W is set to where the suite built the modules")
    } else if command.starts_with("S=") {
        Plan::Skip("S is set to the repository's scripts folder")
    } else if has("node run --config") {
        Plan::Skip("runs a node of the multi-host example in the foreground, on its own machine")
    } else if has("10.0.0.") && has("--save-profile") {
        Plan::Skip("saves a profile naming the multi-host example's machines 10.0.0.1-3")
    } else if has("scripts/test.sh") {
        Plan::Skip("the test command, which runs this test")
    } else if command
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .any(|w| w == ["sluice", "consume"])
        && !command
            .split_whitespace()
            .any(|w| w == "-d" || w == "--disable-continuous")
    {
        Plan::Follow
    } else {
        Plan::Run
    }
}

/// Stops the README's cluster however the test ends.
struct Cleanup {
    home: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new(SLUICE)
            .args(["cluster", "delete"])
            .env("SLUICE_HOME", &self.home)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // What the connector walkthroughs start beside the cluster, if a
        // command failed before they were stopped.
        let Some(dir) = self.home.parent() else {
            return;
        };
        let _ = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres-scratch.sh"))
            .arg("stop")
            .arg(dir.join("pg"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Ok(pid) = std::fs::read_to_string(dir.join("www.pid"))
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}

fn shell(command: &str, dir: &Path, env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new("bash");
    cmd.args(["-c", command]).current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Waits for `child` up to `wait`; its exit status, or `None` if it still runs.
fn wait_for(child: &mut std::process::Child, wait: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn output(child: &mut std::process::Child) -> (String, String) {
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    (out, err)
}

/// How long one command may take: a partition move or a node joining waits
/// for Raft, and debug builds are slow.
const COMMAND_WAIT: Duration = Duration::from_secs(120);
/// How long a following consumer runs before its Ctrl-C.
const FOLLOW_FOR: Duration = Duration::from_secs(4);

#[test]
fn every_readme_shell_command_works_as_written_in_order() {
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let lines = shell_lines(&readme);
    assert!(lines.len() > 40, "found only {} commands", lines.len());
    // The README's local cluster uses ports 9003 and up, nodes 1 to 4.
    for port in 9003..9007 {
        assert!(
            std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} on 127.0.0.1 is taken; the README's local cluster needs 9003-9006 \
             (stop your own local cluster: `sluice cluster shutdown`)"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let _cleanup = Cleanup { home: home.clone() };
    let bin_dir = Path::new(SLUICE).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let wasm = crate::wasm_build::module_path("ssn-scrub");
    let env = [
        ("SLUICE_HOME", home.display().to_string()),
        ("HOME", dir.path().display().to_string()),
        ("PATH", path),
        ("W", wasm.parent().unwrap().display().to_string()),
        (
            "S",
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../scripts")
                .display()
                .to_string(),
        ),
        ("NO_COLOR", "1".to_string()),
    ];
    let mut ran = 0;
    let mut skipped = Vec::new();
    for line in &lines {
        for part in line.text.split(" && ") {
            let part = part.trim();
            match plan(part) {
                Plan::Skip(why) => {
                    skipped.push(format!("README.md:{}: {part} ({why})", line.at));
                }
                Plan::Run => {
                    let mut child = shell(part, dir.path(), &env).spawn().unwrap();
                    let status = wait_for(&mut child, COMMAND_WAIT);
                    if status.is_none() {
                        let _ = child.kill();
                    }
                    let (out, err) = output(&mut child);
                    assert!(
                        status.is_some_and(|s| s.success()),
                        "README.md:{}: `{part}` {}\nstdout:\n{out}\nstderr:\n{err}",
                        line.at,
                        status.map_or("did not finish within 120 s".to_string(), |s| {
                            format!("failed ({s})")
                        }),
                    );
                    ran += 1;
                }
                Plan::Follow => {
                    let mut child = shell(part, dir.path(), &env).spawn().unwrap();
                    let early = wait_for(&mut child, FOLLOW_FOR);
                    if let Some(status) = early {
                        let (out, err) = output(&mut child);
                        panic!(
                            "README.md:{}: `{part}` should keep following, but ended ({status})\nstdout:\n{out}\nstderr:\n{err}",
                            line.at
                        );
                    }
                    // bash runs a lone command in its own place (exec), so
                    // this is the consumer's Ctrl-C.
                    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
                    let status = wait_for(&mut child, Duration::from_secs(15));
                    if status.is_none() {
                        let _ = child.kill();
                    }
                    let (out, err) = output(&mut child);
                    assert!(
                        status.is_some(),
                        "README.md:{}: `{part}` did not stop within 15 s of Ctrl-C\nstdout:\n{out}\nstderr:\n{err}",
                        line.at
                    );
                    assert!(
                        !err.contains("error"),
                        "README.md:{}: `{part}` failed\nstdout:\n{out}\nstderr:\n{err}",
                        line.at
                    );
                    ran += 1;
                }
            }
        }
    }
    eprintln!(
        "ran {ran} README commands; skipped {}:\n{}",
        skipped.len(),
        skipped.join("\n")
    );
    // The skips are the ones the module's documentation names, no more.
    assert_eq!(skipped.len(), 9, "skipped: {skipped:#?}");
}

#[test]
fn shell_lines_join_continuations_and_drop_comments() {
    let text = "x\n```sh\n# a comment\nsluice a \\\n    --b c\n\nsluice d   # note\n```\n```toml\nk = 1\n```\n";
    let lines = shell_lines(text);
    let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts, ["sluice a --b c", "sluice d   # note"]);
    assert_eq!(lines[0].at, 4);
    assert!(matches!(plan("sluice consume t -B"), Plan::Follow));
    assert!(matches!(plan("sluice consume t -B -d"), Plan::Run));
    assert!(matches!(plan("sluice consumer list"), Plan::Run));
    assert!(matches!(
        plan("cargo install --locked --path cli"),
        Plan::Skip(_)
    ));
}
