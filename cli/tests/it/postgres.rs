//! The sql sink into a real PostgreSQL server, started by the test on
//! loopback with `scripts/postgres-scratch.sh` (Debian's server; the test
//! command installs it): rows in transactions, values cast by the server
//! to each column's type, upsert, Fluvio's json-sql form of the mapping,
//! resumption after the committed offset, the errors a user meets, and a
//! sink run by the cluster across a crash of its server.

use std::path::Path;
use std::process::Command;

use crate::harness::Env;

/// A throwaway server, stopped when dropped.
struct Postgres {
    dir: tempfile::TempDir,
    url: String,
}

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres-scratch.sh")
}

impl Postgres {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = Command::new("bash")
            .arg(script())
            .args(["start", &dir.path().join("pg").display().to_string()])
            .arg(port.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cannot start PostgreSQL (scripts/test.sh installs it: apt-get install postgresql): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
        Postgres { dir, url }
    }

    /// Runs SQL with psql; its rows as `a|b` lines.
    fn sql(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args([&self.url, "-v", "ON_ERROR_STOP=1", "-Atc", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn port(&self) -> &str {
        self.url
            .rsplit(':')
            .next()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
    }

    /// `halt` (the server killed as a crash would, its data kept),
    /// `resume` (started again on its data, on the same port) or `tls`
    /// (restarted taking TCP connections over TLS only, `args` its
    /// certificate and key files).
    fn control(&self, verb: &str, args: &[&str]) {
        let mut command = Command::new("bash");
        command
            .arg(script())
            .args([verb, &self.dir.path().join("pg").display().to_string()]);
        if verb != "halt" {
            command.arg(self.port());
        }
        let out = command.args(args).output().unwrap();
        assert!(
            out.status.success(),
            "postgres-scratch.sh {verb}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["stop", &self.dir.path().join("pg").display().to_string()])
            .status();
    }
}

/// Writes a sql-sink file named `name` whose `sql` section is `section`
/// (indented two spaces) and whose transforms are `transforms`.
fn sink_file(env: &Env, name: &str, section: &str, transforms: &str) -> String {
    let file = env.home.path().join(format!("{name}.yml"));
    std::fs::write(
        &file,
        format!(
            "apiVersion: 0.1.0\nmeta:\n  name: {name}\n  type: sql-sink\n  topic: readings\nsql:\n{section}\n{transforms}"
        ),
    )
    .unwrap();
    file.display().to_string()
}

fn run(env: &Env, file: &str, records: u64) -> std::process::Output {
    env.run(
        &[
            "connector",
            "run",
            "--config",
            file,
            "--max-records",
            &records.to_string(),
        ],
        b"",
    )
}

#[test]
fn a_postgres_sink_writes_rows_in_transactions_and_resumes_after_its_commit() {
    let env = Env::started();
    let pg = Postgres::start();
    pg.sql(
        "CREATE TABLE latest (device_id integer PRIMARY KEY, temp double precision, \
           seen timestamptz, raw jsonb);
         CREATE TABLE history (device_id smallint NOT NULL, temp numeric(6,2), kind text, \
           record jsonb)",
    );
    env.ok(&["topic", "create", "readings"]);
    env.ok_with_input(
        &["produce", "readings"],
        b"{\"device\": {\"id\": 1}, \"temp\": 20.5, \"at\": \"2026-12-05T10:00:00Z\"}\n\
          {\"device\": {\"id\": 2}}\n\
          {\"device\": {\"id\": 1}, \"temp\": 22.25, \"at\": \"2026-12-05T11:00:00Z\"}\n",
    );

    // Upsert in our own form: one row per device, the latest reading; the
    // timestamp's text cast by the server to timestamptz.
    let latest = sink_file(
        &env,
        "latest-sink",
        &format!(
            "  url: {}\n  table: latest\n  mode: upsert\n  key: [device_id]\n  columns:\n    \
             device_id: {{json-key: device.id, type: int, required: true}}\n    \
             temp: {{type: float, default: \"0\"}}\n    seen: {{json-key: at, type: timestamp}}\n    \
             raw: {{json-key: \"$\", type: json}}",
            pg.url
        ),
        "",
    );
    let out = run(&env, &latest, 3);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("PostgreSQL database \"sluice\""), "{log}");
    assert_eq!(
        pg.sql(
            "SELECT device_id, temp, extract(hour from seen at time zone 'UTC'), raw->'device'->>'id' \
             FROM latest ORDER BY 1"
        ),
        "1|22.25|11|1\n2|0||2"
    );

    // Insert through Fluvio's json-sql transform, in two runs: the second
    // resumes after the first's commit, so no record is written twice.
    let json_sql = "transforms:\n  - uses: infinyon/json-sql@0.2.1\n    with:\n      mapping:\n        \
                    table: history\n        map-columns:\n          device_id:\n            \
                    json-key: device.id\n            value: {type: int2, required: true}\n          \
                    temp:\n            json-key: temp\n            value: {type: numeric}\n          \
                    kind:\n            json-key: kind\n            value: {type: text, default: sensor}\n          \
                    record:\n            json-key: \"$\"\n            value: {type: jsonb}\n";
    let history = sink_file(
        &env,
        "history-sink",
        &format!("  url: {}", pg.url),
        json_sql,
    );
    let out = run(&env, &history, 3);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.ok_with_input(
        &["produce", "readings"],
        b"{\"device\": {\"id\": 3}, \"temp\": \"19\", \"kind\": \"probe\"}\n",
    );
    let out = run(&env, &history, 1);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = "1|20.50|sensor\n2||sensor\n1|22.25|sensor\n3|19.00|probe";
    assert_eq!(
        pg.sql("SELECT device_id, temp, kind FROM history ORDER BY ctid"),
        rows
    );

    // A value the column cannot hold is refused by the server, naming the
    // record; the batch is rolled back and the offset not committed.
    env.ok_with_input(
        &["produce", "readings"],
        b"{\"device\": {\"id\": 4}}\n{\"device\": {\"id\": 70000}}\n",
    );
    let out = run(&env, &history, 2);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        e.contains("record at 0/5") && e.contains("smallint"),
        "the error names the record and the type: {e}"
    );
    assert_eq!(
        pg.sql("SELECT device_id, temp, kind FROM history ORDER BY ctid"),
        rows,
        "the failed batch was rolled back"
    );
    pg.sql("ALTER TABLE history ALTER COLUMN device_id TYPE integer");
    let out = run(&env, &history, 2);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(pg.sql("SELECT count(*) FROM history"), "6");
}

#[test]
fn a_postgres_sink_names_what_is_missing_before_it_reads() {
    let env = Env::started();
    let pg = Postgres::start();
    pg.sql("CREATE TABLE t (a integer)");
    env.ok(&["topic", "create", "readings"]);
    let columns = "  columns:\n    a: {type: int}";
    for (name, section, expected) in [
        (
            "no-table",
            format!("  url: {}\n  table: nope\n{columns}", pg.url),
            "table \"nope\" does not exist",
        ),
        (
            "no-column",
            format!(
                "  url: {}\n  table: t\n{columns}\n    b: {{type: int}}",
                pg.url
            ),
            "has no column \"b\" (it has a)",
        ),
        (
            "no-database",
            format!("  url: {}_nope\n  table: t\n{columns}", pg.url),
            "does not exist",
        ),
        (
            "no-server",
            format!("  url: postgres://sluice@127.0.0.1:1/sluice\n  table: t\n{columns}"),
            "cannot connect to PostgreSQL database \"sluice\" on 127.0.0.1:1",
        ),
    ] {
        let file = sink_file(&env, name, &section, "");
        let out = run(&env, &file, 1);
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}");
        assert!(e.contains(expected), "{name}: {e}");
    }
    // A json-sql transform anywhere but last is refused when the file is read.
    let file = sink_file(
        &env,
        "misplaced",
        &format!("  url: {}\n  table: t\n{columns}", pg.url),
        "transforms:\n  - uses: infinyon/json-sql\n    with: {mapping: {table: t}}\n  - uses: my-filter\n",
    );
    let e = String::from_utf8_lossy(&run(&env, &file, 1).stderr).to_string();
    assert!(e.contains("goes last"), "{e}");
}

/// A CA named `ca_name` and a certificate it signed for `db.example`
/// only, as PEM: (CA, certificate, key).
fn server_certificate(ca_name: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["db.example".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// `sslmode` and `sslrootcert` against a server that takes TCP connections
/// over TLS only: rows go over TLS when the certificate is checked as asked
/// (chain and name, the name from `host` while `hostaddr` says where to
/// connect; chain only), and the sink refuses, saying what to do, a server
/// whose certificate names another host or chains to another CA. Without
/// TLS the server refuses it, which shows the rows above went over TLS.
#[test]
fn a_postgres_sink_writes_over_tls_and_checks_the_servers_certificate() {
    let env = Env::started();
    let pg = Postgres::start();
    pg.sql("CREATE TABLE t (a integer)");
    let (ca, cert, key) = server_certificate("the database's CA");
    let (other_ca, _, _) = server_certificate("another CA");
    let file = |name: &str, text: &str| {
        let path = env.home.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (ca, other_ca) = (file("ca.pem", &ca), file("other-ca.pem", &other_ca));
    pg.control(
        "tls",
        &[&file("server.crt", &cert), &file("server.key", &key)],
    );
    env.ok(&["topic", "create", "readings"]);
    env.ok_with_input(&["produce", "readings"], b"{\"a\": 1}\n{\"a\": 2}\n");
    let port = pg.port();
    let by_name = format!("postgres://sluice@db.example:{port}/sluice?hostaddr=127.0.0.1");
    let by_address = format!("postgres://sluice@127.0.0.1:{port}/sluice?");
    let written = [
        (
            "full",
            format!("{by_name}&sslmode=verify-full&sslrootcert={ca}"),
            "over TLS, certificate chain and host name checked",
        ),
        (
            "chain",
            format!("{by_address}sslmode=verify-ca&sslrootcert={ca}"),
            "over TLS, certificate chain checked",
        ),
        (
            "required",
            format!("{by_address}sslmode=require&sslrootcert={ca}"),
            "over TLS, certificate chain checked",
        ),
    ];
    // A sink of two records into table t through `url`.
    let sink_through = |name: &str, url: &str| {
        let section = format!("  url: \"{url}\"\n  table: t\n  columns:\n    a: {{type: int}}");
        run(&env, &sink_file(&env, name, &section, ""), 2)
    };
    for (name, url, expected) in &written {
        let out = sink_through(name, url);
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {log}");
        assert!(log.contains(expected), "{name}: {log}");
    }
    assert_eq!(pg.sql("SELECT count(*) FROM t"), "6");
    let refused = [
        (
            "wrong-name",
            format!("{by_address}sslmode=verify-full&sslrootcert={ca}"),
            "does not name the host of the url",
        ),
        (
            "wrong-ca",
            format!("{by_name}&sslmode=verify-full&sslrootcert={other_ca}"),
            "does not chain to a trusted CA: give its CA with sslrootcert=FILE",
        ),
        (
            "wrong-ca-chain-only",
            format!("{by_address}sslmode=verify-ca&sslrootcert={other_ca}"),
            "does not chain to a trusted CA",
        ),
        (
            "no-ca-file",
            format!("{by_name}&sslmode=verify-full&sslrootcert={ca}.missing"),
            "ca.pem.missing",
        ),
        (
            "plain",
            format!("{by_address}sslmode=disable"),
            "no encryption",
        ),
        (
            "socket",
            "postgres:///sluice?host=/tmp&sslmode=require".to_string(),
            "TLS over a Unix socket",
        ),
    ];
    for (name, url, expected) in &refused {
        let out = sink_through(name, url);
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}");
        assert!(e.contains(expected), "{name}: {e}");
    }
    assert_eq!(pg.sql("SELECT count(*) FROM t"), "6");
}

#[test]
fn a_cluster_run_postgres_sink_rides_out_a_crash_of_its_server_without_losing_a_record() {
    use std::time::Duration;
    let env = Env::started();
    let pg = Postgres::start();
    pg.sql("CREATE TABLE seen (id integer PRIMARY KEY, body text)");
    env.ok(&["topic", "create", "readings"]);
    let file = sink_file(
        &env,
        "seen-sink",
        &format!(
            "  url: {}\n  table: seen\n  mode: upsert\n  key: [id]\n  columns:\n    \
             id: {{type: int, required: true}}\n    body: {{type: text}}",
            pg.url
        ),
        "",
    );
    env.ok(&["connector", "create", "--config", &file]);
    let records = |ids: std::ops::Range<u32>| -> Vec<u8> {
        ids.map(|i| format!("{{\"id\": {i}, \"body\": \"r{i}\"}}\n"))
            .collect::<String>()
            .into_bytes()
    };
    let count = || pg.sql("SELECT count(*), count(DISTINCT body) FROM seen");
    env.ok_with_input(&["produce", "readings"], &records(0..50));
    crate::harness::wait_until(Duration::from_secs(60), || count() == "50|50");

    // The server crashes; records keep arriving. The sink's writes fail,
    // it ends and its node starts it again with backoff, until the server
    // is back; then every record is in the table.
    pg.control("halt", &[]);
    env.ok_with_input(&["produce", "readings"], &records(50..100));
    let describe = || -> serde_json::Value {
        serde_json::from_str(&env.ok(&["connector", "describe", "seen-sink", "-O", "json"]))
            .unwrap()
    };
    crate::harness::wait_until(Duration::from_secs(30), || {
        describe()["restarts"].as_u64().unwrap_or(0) >= 1
    });
    pg.control("resume", &[]);
    crate::harness::wait_until(Duration::from_secs(90), || count() == "100|100");
    assert_eq!(pg.sql("SELECT min(id), max(id) FROM seen"), "0|99");
    let d = describe();
    assert_eq!(d["state"], "running", "{d}");
    env.ok(&["connector", "delete", "seen-sink"]);
}
