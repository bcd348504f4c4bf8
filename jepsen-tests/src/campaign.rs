//! `jepsen-tests campaign`: many seeded runs, one after another, the nemesis
//! rotating through families, and one report over all of them.
//!
//! Each run is its own `jepsen-tests run` process (as in `soak`: a fresh
//! network namespace each, and a crash of one cannot hide in the next). Unlike
//! `soak` the campaign goes on after an invalid run, so one campaign measures
//! every family instead of stopping at the first finding. Valid runs lose their
//! bulky data (nodes' data dirs and logs, the client profile) and keep their
//! history, results and output; invalid, unknown and failed runs keep
//! everything, and the report gives each one's replay command.
//!
//! `campaign.md` and `campaign.json` in the campaign's directory are rewritten
//! after every run, so an interrupted campaign still reports what it did.
//! Everything the report says is computed by pure functions ([`rotation`],
//! [`planned`], [`outcome`], [`tally`], [`render_markdown`]) from the runs'
//! `results.json`, which is what the unit tests check.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::checker::{CheckResult, Validity};
use crate::run::RunConfig;
use crate::run::schedule::{FAMILIES, all_alias, families, parse_nemesis};

/// The nemesis of each run, in turn: `--nemesis` split at commas, where `all`
/// stands for every family the node count allows (see
/// [`crate::run::schedule::families`]; `all-before-log-disk`,
/// `all-before-clock` and `all-before-loss` for the rotations of campaigns
/// recorded before sessions 35, 28 and 27, [`all_alias`]) and any other item is one `run
/// --nemesis` value (a family, `family:variant`), checked here so a typo fails
/// the campaign at once rather than every run of it.
pub fn rotation(list: &str, nodes: u32) -> anyhow::Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let items: Vec<String> = if let Some(listed) = all_alias(item, nodes) {
            listed.into_iter().map(str::to_string).collect()
        } else {
            parse_nemesis(item, nodes)
                .with_context(|| format!("--nemesis {list:?}: item {item:?}"))?;
            vec![item.to_string()]
        };
        for i in items {
            if !out.contains(&i) {
                out.push(i);
            }
        }
    }
    if out.is_empty() {
        bail!("--nemesis names no fault; e.g. --nemesis all, or --nemesis kill,power-loss:all");
    }
    Ok(out)
}

/// The families `all` leaves out on `nodes` nodes, with why, for the report
/// (empty when `list` does not say `all`).
pub fn left_out(list: &str, nodes: u32) -> Vec<String> {
    if !list
        .split(',')
        .any(|i| all_alias(i.trim(), nodes).is_some())
    {
        return Vec::new();
    }
    let allowed = families(nodes);
    FAMILIES
        .iter()
        .filter(|f| !allowed.contains(f))
        .map(|f| format!("{f} (needs 4+ nodes, the campaign has {nodes})"))
        .collect()
}

/// One run of the campaign before it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Planned {
    /// 1-based.
    pub n: u64,
    /// Its `--nemesis`.
    pub nemesis: String,
    pub seed: u64,
}

/// Run `n` (1-based): the rotation's entry `(n - 1) % len` and the seed
/// `seed_start + n - 1`, so every entry has a turn before any has a second,
/// no seed repeats, and the same `--seed-start` plans the same campaign.
pub fn planned(rotation: &[String], n: u64, seed_start: u64) -> Planned {
    assert!(n >= 1 && !rotation.is_empty(), "run {n} of {rotation:?}");
    let k = n - 1;
    Planned {
        n,
        nemesis: rotation[(k % rotation.len() as u64) as usize].clone(),
        seed: seed_start.wrapping_add(k),
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Valid,
    Unknown,
    /// The run produced no verdict (it failed: exit status 3, a signal, no
    /// readable `results.json`), or its exit status contradicts its results.
    Failed,
    Invalid,
}

impl Verdict {
    /// The exit status of `jepsen-tests run` for this verdict.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Valid => 0,
            Verdict::Invalid => 1,
            Verdict::Unknown => 2,
            Verdict::Failed => 3,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Valid => "valid",
            Verdict::Invalid => "INVALID",
            Verdict::Unknown => "unknown",
            Verdict::Failed => "FAILED",
        })
    }
}

/// Workload operations invoked in a period and how many succeeded (a sum over
/// runs of `results.json`'s `availability`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ops {
    pub invoked: u64,
    pub ok: u64,
}

impl Ops {
    fn add(&mut self, o: Ops) {
        self.invoked += o.invoked;
        self.ok += o.ok;
    }

    /// "93.1 % (1204/1293)", or "–" when nothing was invoked.
    fn render(&self) -> String {
        if self.invoked == 0 {
            return "–".into();
        }
        format!(
            "{:.1} % ({}/{})",
            100.0 * self.ok as f64 / self.invoked as f64,
            self.ok,
            self.invoked
        )
    }
}

/// What one finished run contributes to the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOutcome {
    pub n: u64,
    pub nemesis: String,
    pub seed: u64,
    pub verdict: Verdict,
    /// Wall-clock time of the run, setup and checks included.
    pub seconds: f64,
    pub dir: PathBuf,
    /// Faults injected, by kind (`results.json`'s `faults`).
    pub faults: BTreeMap<String, u64>,
    /// Anomalies by kind, only the kinds that occurred.
    pub anomalies: BTreeMap<String, u64>,
    /// The schedule's faults in order (`power-loss:all`, ...): which variants
    /// a family's runs drew.
    pub scheduled: Vec<String>,
    pub during_faults: Ops,
    pub outside_faults: Ops,
    /// Why it is unknown or failed (`unknown_reasons`, or what went wrong).
    pub why: Vec<String>,
    /// The command that repeats it.
    pub replay: String,
}

/// The outcome of run `p` from its `results.json` (`None`: missing or not
/// JSON) and the exit status of its process (`None`: killed by a signal).
pub fn outcome(
    p: &Planned,
    results: Option<&serde_json::Value>,
    exit: Option<i32>,
    seconds: f64,
    dir: &Path,
    replay: String,
) -> RunOutcome {
    let mut o = RunOutcome {
        n: p.n,
        nemesis: p.nemesis.clone(),
        seed: p.seed,
        verdict: Verdict::Failed,
        seconds,
        dir: dir.to_path_buf(),
        faults: BTreeMap::new(),
        anomalies: BTreeMap::new(),
        scheduled: Vec::new(),
        during_faults: Ops::default(),
        outside_faults: Ops::default(),
        why: Vec::new(),
        replay,
    };
    let exit_text = exit.map_or("killed by a signal".to_string(), |c| {
        format!("exit status {c}")
    });
    // results.json is the check's result with the run's facts beside it
    // (`run`), which the typed result ignores.
    let checked = results.map(|v| serde_json::from_value::<CheckResult>(v.clone()));
    let r = match checked {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            o.why
                .push(format!("{exit_text}; results.json is unreadable: {e}"));
            return o;
        }
        None => {
            o.why.push(format!(
                "{exit_text} and no results.json (see output.log in the run's directory)"
            ));
            return o;
        }
    };
    o.verdict = match r.valid {
        Validity::Valid => Verdict::Valid,
        Validity::Invalid => Verdict::Invalid,
        Validity::Unknown => Verdict::Unknown,
    };
    o.faults = r.faults.clone();
    o.anomalies = r
        .anomalies
        .iter()
        .filter(|(_, a)| a.count > 0)
        .map(|(k, a)| (k.clone(), a.count))
        .collect();
    let period = |p: &crate::checker::Period| Ops {
        invoked: p.invoked,
        ok: p.ok,
    };
    o.during_faults = period(&r.availability.during_faults);
    o.outside_faults = period(&r.availability.outside_faults);
    // Schedule lines read "3.0s +2.5s power-loss:all".
    o.scheduled = results
        .and_then(|v| v["run"]["schedule"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str()?.split_whitespace().last().map(str::to_string))
        .collect();
    if o.verdict != Verdict::Valid {
        o.why = r.unknown_reasons.clone();
    }
    if exit != Some(i32::from(o.verdict.exit_code())) {
        // The process ended otherwise than its results say (e.g. it failed
        // writing its summary): keep the run and say so.
        o.why.push(format!(
            "{exit_text}, although results.json says {}",
            o.verdict
        ));
        o.verdict = Verdict::Failed;
    }
    o
}

/// The figures of one rotation entry (or of the whole campaign).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub nemesis: String,
    pub runs: u64,
    pub valid: u64,
    pub invalid: u64,
    pub unknown: u64,
    pub failed: u64,
    pub anomalies: BTreeMap<String, u64>,
    pub faults: BTreeMap<String, u64>,
    /// How often each fault variant was scheduled.
    pub scheduled: BTreeMap<String, u64>,
    pub during_faults: Ops,
    pub outside_faults: Ops,
    pub seconds: f64,
}

impl Tally {
    fn new(nemesis: &str) -> Self {
        Tally {
            nemesis: nemesis.to_string(),
            ..Tally::default()
        }
    }

    fn add(&mut self, r: &RunOutcome) {
        self.runs += 1;
        *match r.verdict {
            Verdict::Valid => &mut self.valid,
            Verdict::Invalid => &mut self.invalid,
            Verdict::Unknown => &mut self.unknown,
            Verdict::Failed => &mut self.failed,
        } += 1;
        for (k, n) in &r.anomalies {
            *self.anomalies.entry(k.clone()).or_default() += n;
        }
        for (k, n) in &r.faults {
            *self.faults.entry(k.clone()).or_default() += n;
        }
        for s in &r.scheduled {
            *self.scheduled.entry(s.clone()).or_default() += 1;
        }
        self.during_faults.add(r.during_faults);
        self.outside_faults.add(r.outside_faults);
        self.seconds += r.seconds;
    }
}

/// One row per rotation entry, in rotation order (entries with no run yet
/// included, so the table shows what is still to come), then any nemesis the
/// runs name that the rotation does not; and the total over every run.
pub fn tally(rotation: &[String], runs: &[RunOutcome]) -> (Vec<Tally>, Tally) {
    let mut rows: Vec<Tally> = rotation.iter().map(|n| Tally::new(n)).collect();
    let mut total = Tally::new("total");
    for r in runs {
        let i = match rows.iter().position(|t| t.nemesis == r.nemesis) {
            Some(i) => i,
            None => {
                rows.push(Tally::new(&r.nemesis));
                rows.len() - 1
            }
        };
        rows[i].add(r);
        total.add(r);
    }
    (rows, total)
}

/// What the report says about the campaign as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Runs asked for (`--runs`).
    pub runs: u64,
    pub seed_start: u64,
    pub rotation: Vec<String>,
    /// Families `all` left out, with why.
    pub left_out: Vec<String>,
    /// The options every run shares (`--workload ... --partitions N`).
    pub run_options: String,
}

/// `k: n, k: n` (sorted by key), or "–".
fn counts(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "–".into();
    }
    m.iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A table cell: pipes escaped, newlines flattened.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn row(s: &mut String, t: &Tally, bold: bool) {
    let name = if bold {
        format!("**{}**", t.nemesis)
    } else {
        format!("`{}`", t.nemesis)
    };
    // Writing to a String cannot fail.
    let _ = writeln!(
        s,
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        name,
        t.runs,
        t.valid,
        t.invalid,
        t.unknown,
        t.failed,
        cell(&counts(&t.anomalies)),
        cell(&counts(&t.faults)),
        cell(&counts(&t.scheduled)),
        t.during_faults.render(),
        t.outside_faults.render(),
    );
}

/// `campaign.md`: the parameters, the table (nemesis x verdicts, anomalies
/// by kind, faults injected by kind, variants scheduled, availability during
/// and outside faults), and every run that was not valid with its replay.
pub fn render_markdown(h: &Header, runs: &[RunOutcome]) -> String {
    let (rows, total) = tally(&h.rotation, runs);
    let mut s = String::new();
    let _ = writeln!(s, "# Campaign\n");
    let last_seed = h.seed_start.wrapping_add(h.runs.saturating_sub(1));
    let _ = writeln!(
        s,
        "{} of {} run(s) done: `jepsen-tests run {}`, seeds {} to {}, the nemesis in turn: {}.",
        runs.len(),
        h.runs,
        h.run_options,
        h.seed_start,
        last_seed,
        h.rotation
            .iter()
            .map(|r| format!("`{r}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !h.left_out.is_empty() {
        let _ = writeln!(s, "\nLeft out of `all`: {}.", h.left_out.join(", "));
    }
    let _ = writeln!(
        s,
        "\nAvailability: workload operations invoked during faults (outside them) and how many \
         succeeded. Faults: injected, by kind; variants: scheduled, by variant.\n"
    );
    let _ = writeln!(
        s,
        "| nemesis | runs | valid | invalid | unknown | failed | anomalies | faults injected | variants scheduled | ok during faults | ok outside faults |"
    );
    let _ = writeln!(
        s,
        "| --- | --: | --: | --: | --: | --: | --- | --- | --- | --: | --: |"
    );
    for t in &rows {
        row(&mut s, t, false);
    }
    row(&mut s, &total, true);
    let _ = writeln!(
        s,
        "\n{:.0} s of runs in all.",
        runs.iter().map(|r| r.seconds).sum::<f64>()
    );
    let bad: Vec<&RunOutcome> = runs
        .iter()
        .filter(|r| r.verdict != Verdict::Valid)
        .collect();
    let _ = writeln!(s, "\n## Runs that were not valid\n");
    if bad.is_empty() {
        let _ = writeln!(s, "None.");
    }
    for r in bad {
        let mut why = Vec::new();
        if !r.anomalies.is_empty() {
            why.push(counts(&r.anomalies));
        }
        why.extend(r.why.iter().cloned());
        let _ = writeln!(
            s,
            "- run {} (`{}`, seed {}): **{}**{}; kept in `{}`\n\n  ```sh\n  {}\n  ```\n",
            r.n,
            r.nemesis,
            r.seed,
            r.verdict,
            if why.is_empty() {
                String::new()
            } else {
                format!(" — {}", why.join("; "))
            },
            r.dir.display(),
            r.replay
        );
    }
    s
}

/// `campaign.json`: the same as `campaign.md`, every run in full.
pub fn render_json(h: &Header, runs: &[RunOutcome]) -> serde_json::Value {
    let (rows, total) = tally(&h.rotation, runs);
    serde_json::json!({
        "campaign": h,
        "done": runs.len(),
        "by_nemesis": rows,
        "total": total,
        "runs": runs,
    })
}

/// The campaign's settings.
#[derive(Debug, Clone)]
pub struct Campaign {
    /// The options every run shares; its `nemesis`, `seed` and `out` are
    /// replaced per run.
    pub base: RunConfig,
    /// `--nemesis` as given (`all`, or a list).
    pub nemesis: String,
    pub runs: u64,
    pub seed_start: u64,
    pub out: PathBuf,
}

/// Deletes what a valid run does not need to be understood later: the nodes'
/// data dirs and logs and the client profile. Its history, results, summary
/// and output stay.
fn prune(dir: &Path) {
    for sub in ["data", "home"] {
        let _ = std::fs::remove_dir_all(dir.join(sub));
    }
}

/// Writes `path` whole or not at all (a reader never sees half a report).
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Runs the campaign (see the module documentation); returns the worst
/// verdict of its runs. Each run finds `sluice` as `run` does
/// ([`crate::run::find_sluice`]; the caller checks it is there first).
pub fn run_campaign(c: &Campaign) -> anyhow::Result<Verdict> {
    if c.runs == 0 {
        bail!("--runs 0: a campaign needs at least one run");
    }
    let rotation = rotation(&c.nemesis, c.base.nodes)?;
    // Refuse what every run would refuse, before the first one.
    c.base.validate()?;
    let exe = std::env::current_exe().context("cannot find the jepsen-tests executable")?;
    if c.out.join("campaign.json").exists() {
        bail!(
            "{} already holds a campaign; pick a fresh --out directory",
            c.out.display()
        );
    }
    std::fs::create_dir_all(&c.out)
        .with_context(|| format!("cannot create {}", c.out.display()))?;
    let header = Header {
        runs: c.runs,
        seed_start: c.seed_start,
        rotation: rotation.clone(),
        left_out: left_out(&c.nemesis, c.base.nodes),
        run_options: {
            // Every option but the per-run ones.
            let mut a = c.base.run_args();
            for per_run in ["--nemesis", "--seed"] {
                if let Some(i) = a.iter().position(|x| x == per_run) {
                    a.drain(i..i + 2);
                }
            }
            a.join(" ")
        },
    };
    println!(
        "campaign: {} run(s) of {} s, seeds {} on, the nemesis in turn: {}; reports in {}",
        c.runs,
        c.base.duration.as_secs(),
        c.seed_start,
        rotation.join(", "),
        c.out.join("campaign.md").display()
    );
    for l in &header.left_out {
        println!("left out of all: {l}");
    }
    let width = c.runs.to_string().len();
    let mut runs: Vec<RunOutcome> = Vec::new();
    for n in 1..=c.runs {
        let p = planned(&rotation, n, c.seed_start);
        let dir = c.out.join(format!(
            "run-{n:0width$}-{}-seed-{}",
            p.nemesis.replace(':', "-"),
            p.seed
        ));
        let cfg = RunConfig {
            nemesis: p.nemesis.clone(),
            seed: p.seed,
            out: dir.clone(),
            ..c.base.clone()
        };
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let log_path = dir.join("output.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let started = Instant::now();
        let status = Command::new(&exe)
            .arg("run")
            .args(cfg.run_args())
            .arg("--out")
            .arg(&dir)
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let seconds = started.elapsed().as_secs_f64();
        let results = std::fs::read_to_string(dir.join("results.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
        let o = outcome(
            &p,
            results.as_ref(),
            status.code(),
            seconds,
            &dir,
            cfg.replay(),
        );
        if o.verdict == Verdict::Valid {
            prune(&dir);
        }
        let mut line = format!(
            "[{n:>width$}/{}] {} seed {}: {} in {seconds:.1} s",
            c.runs, p.nemesis, p.seed, o.verdict
        );
        if o.verdict != Verdict::Valid {
            if !o.anomalies.is_empty() {
                line.push_str(&format!(" ({})", counts(&o.anomalies)));
            }
            line.push_str(&format!("; kept in {}", dir.display()));
        }
        println!("{line}");
        runs.push(o);
        write_atomically(&c.out.join("campaign.md"), &render_markdown(&header, &runs))?;
        write_atomically(
            &c.out.join("campaign.json"),
            &(serde_json::to_string_pretty(&render_json(&header, &runs))? + "\n"),
        )?;
    }
    let (_, total) = tally(&rotation, &runs);
    println!(
        "campaign done: {} run(s), {} valid, {} invalid, {} unknown, {} failed; see {}",
        total.runs,
        total.valid,
        total.invalid,
        total.unknown,
        total.failed,
        c.out.join("campaign.md").display()
    );
    Ok(runs
        .iter()
        .map(|r| r.verdict)
        .max()
        .unwrap_or(Verdict::Valid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::{CheckOptions, check_with};
    use crate::history::HistoryBuilder;
    use crate::run::schedule::MEMBERSHIP_MIN_NODES;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn all_rotates_through_every_family_the_nodes_allow() {
        let three = strings(&[
            "kill",
            "pause",
            "partition",
            "power-loss",
            "corruption",
            "pause-kill",
            "part-kill",
        ]);
        assert_eq!(rotation("all-before-loss", 3).unwrap(), three);
        let mut with_loss = three.clone();
        with_loss.extend(strings(&["loss", "crash-at", "disk-full"]));
        assert_eq!(rotation("all-before-clock", 3).unwrap(), with_loss);
        with_loss.extend(strings(&["clock", "delay"]));
        assert_eq!(rotation("all-before-log-disk", 3).unwrap(), with_loss);
        with_loss.extend(strings(&["log-disk-full"]));
        assert_eq!(rotation("all", 3).unwrap(), with_loss);
        let mut four = three.clone();
        four.extend(strings(&["membership", "membership-kill"]));
        assert_eq!(
            rotation("all-before-loss", MEMBERSHIP_MIN_NODES).unwrap(),
            four
        );
        four.extend(strings(&[
            "loss",
            "crash-at",
            "disk-full",
            "clock",
            "delay",
            "log-disk-full",
        ]));
        assert_eq!(rotation("all", MEMBERSHIP_MIN_NODES).unwrap(), four);
        // Every fault `run --nemesis all` can draw belongs to a rotation entry.
        for nodes in [3, 4] {
            let r = rotation("all", nodes).unwrap();
            for f in parse_nemesis("all", nodes).unwrap() {
                assert!(r.iter().any(|e| e == f.family()), "{f} has no turn");
            }
        }
        assert_eq!(left_out("all", 3).len(), 2, "{:?}", left_out("all", 3));
        assert!(left_out("all", 3)[0].starts_with("membership "));
        assert!(left_out("all", 4).is_empty());
        assert_eq!(left_out("all-before-loss", 3).len(), 2);
        assert!(left_out("membership", 3).is_empty());
    }

    #[test]
    fn a_list_rotates_its_items_once_each_and_typos_fail_at_once() {
        assert_eq!(
            rotation("power-loss:all, kill,power-loss:all", 3).unwrap(),
            strings(&["power-loss:all", "kill"])
        );
        // `all` among other items: theirs first, then the families not yet named.
        let r = rotation("part-kill:ring,kill,all", 3).unwrap();
        assert_eq!(&r[..3], &strings(&["part-kill:ring", "kill", "pause"]));
        // Every family once, `kill` named already (`part-kill:ring` is not
        // the family `part-kill`).
        assert_eq!(r.len(), 2 + families(3).len() - 1);
        let e = rotation("kill,kill:sideways", 3).unwrap_err();
        assert!(format!("{e:#}").contains("kill:sideways"), "{e:#}");
        assert!(rotation(" , ", 3).is_err());
    }

    #[test]
    fn every_entry_has_a_turn_before_any_has_a_second() {
        let r = rotation("all", 3).unwrap();
        let runs = 2 * r.len() as u64 + 1;
        let plan: Vec<Planned> = (1..=runs).map(|n| planned(&r, n, 100)).collect();
        let turn = |from: usize| -> Vec<String> {
            plan[from..from + r.len()]
                .iter()
                .map(|p| p.nemesis.clone())
                .collect()
        };
        assert_eq!(turn(0), r);
        assert_eq!(turn(r.len()), r);
        assert_eq!(plan[2 * r.len()].nemesis, r[0]);
        let seeds: Vec<u64> = plan.iter().map(|p| p.seed).collect();
        assert_eq!(seeds, (100..100 + runs).collect::<Vec<_>>());
        assert_eq!(
            plan.iter().map(|p| p.n).collect::<Vec<_>>(),
            (1..=runs).collect::<Vec<_>>()
        );
        // The same start plans the same campaign; seeds wrap rather than overflow.
        assert_eq!(planned(&r, 9, 100), plan[8]);
        assert_eq!(planned(&r, 2, u64::MAX).seed, 0);
    }

    /// A run's results.json as `run` writes it: the checker's result of a
    /// small history (a kill, 12 acknowledged sends; `lose` drops the last
    /// from the final reads) and the run's schedule.
    fn results(lose: bool, schedule: &[&str]) -> serde_json::Value {
        let mut b = HistoryBuilder::new();
        b.fault_start("kill", &[2]);
        let mut log = Vec::new();
        for i in 0..12 {
            let v = format!("w1-{i}");
            b.send_ok(1, &v, 0, i);
            log.push((i, v));
        }
        b.fault_stop("kill", &[2]);
        if lose {
            log.pop();
        }
        let log: Vec<(u64, &str)> = log.iter().map(|(o, v)| (*o, v.as_str())).collect();
        b.final_read(1, 0, &log).final_read(2, 0, &log);
        let r = check_with(
            &b.build().unwrap(),
            &CheckOptions {
                min_ops: 10,
                ..CheckOptions::default()
            },
        );
        let mut v = serde_json::to_value(&r).unwrap();
        v["run"] = serde_json::json!({ "schedule": schedule, "replay": "ignored" });
        v
    }

    #[test]
    fn a_run_outcome_comes_from_its_results_and_exit_status() {
        let p = Planned {
            n: 3,
            nemesis: "kill".into(),
            seed: 42,
        };
        let dir = Path::new("/c/run-3");
        let sched = ["3.0s +2.5s kill:one", "7.1s +4.0s kill:all"];
        let ok = results(false, &sched);
        let o = outcome(&p, Some(&ok), Some(0), 40.5, dir, "replay-3".into());
        assert_eq!(o.verdict, Verdict::Valid);
        assert_eq!(o.faults, BTreeMap::from([("kill".to_string(), 1)]));
        assert!(o.anomalies.is_empty(), "{:?}", o.anomalies);
        assert_eq!(o.scheduled, strings(&["kill:one", "kill:all"]));
        assert_eq!(o.during_faults.invoked + o.outside_faults.invoked, 12);
        assert_eq!(o.during_faults.ok, o.during_faults.invoked);
        assert_eq!((o.n, o.seed, o.seconds), (3, 42, 40.5));
        assert_eq!(o.replay, "replay-3");
        assert!(o.why.is_empty(), "{:?}", o.why);

        let lost = results(true, &sched);
        let o = outcome(&p, Some(&lost), Some(1), 1.0, dir, String::new());
        assert_eq!(o.verdict, Verdict::Invalid);
        assert_eq!(o.anomalies, BTreeMap::from([("lost_write".to_string(), 1)]));

        // Valid results but the process failed after writing them: kept.
        let o = outcome(&p, Some(&ok), Some(3), 1.0, dir, String::new());
        assert_eq!(o.verdict, Verdict::Failed);
        assert!(
            o.why.iter().any(|w| w.contains("exit status 3")),
            "{:?}",
            o.why
        );

        let o = outcome(&p, None, None, 1.0, dir, String::new());
        assert_eq!(o.verdict, Verdict::Failed);
        assert!(o.why[0].contains("killed by a signal"), "{:?}", o.why);
        let o = outcome(
            &p,
            Some(&serde_json::json!({"valid": 5})),
            Some(3),
            1.0,
            dir,
            String::new(),
        );
        assert_eq!(o.verdict, Verdict::Failed);
        assert!(o.why[0].contains("unreadable"), "{:?}", o.why);
    }

    /// A hand-made run outcome.
    fn ran(n: u64, nemesis: &str, verdict: Verdict, anomalies: &[(&str, u64)]) -> RunOutcome {
        RunOutcome {
            n,
            nemesis: nemesis.into(),
            seed: 100 + n,
            verdict,
            seconds: 10.0,
            dir: PathBuf::from(format!("/c/run-{n}")),
            faults: BTreeMap::from([(nemesis.replace('-', "_"), n)]),
            anomalies: anomalies.iter().map(|(k, c)| (k.to_string(), *c)).collect(),
            scheduled: vec![format!("{nemesis}:all"); n as usize],
            during_faults: Ops {
                invoked: 10 * n,
                ok: 5 * n,
            },
            outside_faults: Ops {
                invoked: 100,
                ok: 99,
            },
            why: if verdict == Verdict::Unknown {
                vec!["no fault | injected".into()]
            } else {
                Vec::new()
            },
            replay: format!(
                "jepsen-tests run --seed {} --out /c/run-{n}-replay",
                100 + n
            ),
        }
    }

    fn runs() -> Vec<RunOutcome> {
        vec![
            ran(1, "kill", Verdict::Valid, &[]),
            ran(
                2,
                "power-loss",
                Verdict::Invalid,
                &[("lost_write", 2), ("duplicate", 1)],
            ),
            ran(3, "kill", Verdict::Unknown, &[]),
            ran(4, "power-loss", Verdict::Invalid, &[("lost_write", 3)]),
            ran(5, "kill", Verdict::Failed, &[]),
            ran(6, "pause:one", Verdict::Valid, &[]),
        ]
    }

    #[test]
    fn the_tally_sums_each_nemesis_and_the_whole() {
        let rot = strings(&["kill", "power-loss", "corruption"]);
        let (rows, total) = tally(&rot, &runs());
        let names: Vec<&str> = rows.iter().map(|t| t.nemesis.as_str()).collect();
        // Rotation order, an entry without runs kept, a stray nemesis appended.
        assert_eq!(names, ["kill", "power-loss", "corruption", "pause:one"]);
        let kill = &rows[0];
        assert_eq!(
            (
                kill.runs,
                kill.valid,
                kill.invalid,
                kill.unknown,
                kill.failed
            ),
            (3, 1, 0, 1, 1)
        );
        assert_eq!(
            kill.faults,
            BTreeMap::from([("kill".to_string(), 1 + 3 + 5)])
        );
        assert_eq!(
            kill.scheduled,
            BTreeMap::from([("kill:all".to_string(), 9)])
        );
        assert_eq!(
            kill.during_faults,
            Ops {
                invoked: 90,
                ok: 45
            }
        );
        assert_eq!(
            kill.outside_faults,
            Ops {
                invoked: 300,
                ok: 297
            }
        );
        assert_eq!(kill.seconds, 30.0);
        let pl = &rows[1];
        assert_eq!((pl.runs, pl.invalid), (2, 2));
        assert_eq!(
            pl.anomalies,
            BTreeMap::from([("duplicate".to_string(), 1), ("lost_write".to_string(), 5)])
        );
        assert_eq!(rows[2], Tally::new("corruption"));
        assert_eq!(
            (
                total.runs,
                total.valid,
                total.invalid,
                total.unknown,
                total.failed
            ),
            (6, 2, 2, 1, 1)
        );
        assert_eq!(total.anomalies["lost_write"], 5);
        assert_eq!(total.faults.values().sum::<u64>(), 21);
        assert_eq!(total.during_faults.invoked, 210);
    }

    #[test]
    fn the_report_has_the_table_and_every_run_that_was_not_valid_with_its_replay() {
        let h = Header {
            runs: 10,
            seed_start: 101,
            rotation: strings(&["kill", "power-loss", "corruption"]),
            left_out: vec!["membership (needs 4+ nodes, the campaign has 3)".into()],
            run_options: "--workload log --duration 30".into(),
        };
        let runs = runs();
        let md = render_markdown(&h, &runs);
        assert!(md.contains("6 of 10 run(s) done"), "{md}");
        assert!(md.contains("seeds 101 to 110"), "{md}");
        assert!(md.contains("Left out of `all`: membership"), "{md}");
        assert!(
            md.contains(
                "| `kill` | 3 | 1 | 0 | 1 | 1 | – | kill: 9 | kill:all: 9 | 50.0 % (45/90) | 99.0 % (297/300) |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| `power-loss` | 2 | 0 | 2 | 0 | 0 | duplicate: 1, lost_write: 5 |"),
            "{md}"
        );
        assert!(
            md.contains("| `corruption` | 0 | 0 | 0 | 0 | 0 | – | – | – | – | – |"),
            "{md}"
        );
        assert!(md.contains("| **total** | 6 | 2 | 2 | 1 | 1 |"), "{md}");
        // Every run that was not valid, with its replay; no valid one.
        for r in &runs {
            let listed = md.contains(&format!("- run {} (`{}`, seed {})", r.n, r.nemesis, r.seed));
            assert_eq!(listed, r.verdict != Verdict::Valid, "run {}: {md}", r.n);
            assert_eq!(
                md.contains(&r.replay),
                r.verdict != Verdict::Valid,
                "run {}",
                r.n
            );
        }
        assert!(
            md.contains("**INVALID** — duplicate: 1, lost_write: 2"),
            "{md}"
        );
        assert!(md.contains("**unknown** — no fault | injected"), "{md}");
        let json = render_json(&h, &runs);
        assert_eq!(json["done"], 6);
        assert_eq!(json["total"]["invalid"], 2);
        assert_eq!(json["by_nemesis"][1]["anomalies"]["lost_write"], 5);
        assert_eq!(json["runs"][3]["replay"], runs[3].replay.as_str());
        assert_eq!(json["runs"][4]["verdict"], "failed");
        let none = render_markdown(&h, &runs[..1]);
        assert!(
            none.contains("## Runs that were not valid\n\nNone."),
            "{none}"
        );
    }

    #[test]
    fn the_worst_verdict_decides_the_exit_status() {
        let worst = |v: &[Verdict]| v.iter().copied().max().unwrap().exit_code();
        assert_eq!(worst(&[Verdict::Valid, Verdict::Valid]), 0);
        assert_eq!(worst(&[Verdict::Valid, Verdict::Unknown]), 2);
        assert_eq!(worst(&[Verdict::Unknown, Verdict::Failed]), 3);
        assert_eq!(
            worst(&[Verdict::Failed, Verdict::Invalid, Verdict::Valid]),
            1
        );
    }
}
