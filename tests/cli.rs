//! Integration tests: the real `leadgate` binary on real files, with the real
//! components built by `cargo xtask build`.

#![allow(clippy::unwrap_used)]

mod common;

use common::store::{location, location_in, on_postgres};
use common::{components, leadgate, ok};

use leadgate_store::prelude::*;
use std::path::Path;
use std::process::{Output, Stdio};

/// Writes `config` as `leadgate.toml` in `dir` and runs
/// `leadgate --config leadgate.toml run --input in.csv --output out.ndjson`
/// with `extra` arguments.
fn run_configured(dir: &Path, config: &str, extra: &[&str]) -> Output {
    std::fs::write(dir.join("leadgate.toml"), config).unwrap();
    leadgate(dir)
        .args([
            "--config",
            "leadgate.toml",
            "run",
            "--input",
            "in.csv",
            "--output",
            "out.ndjson",
        ])
        .args(extra)
        .output()
        .unwrap()
}

/// `leadgate [--config leadgate.toml] --db DB run` over `in.csv` in `d`,
/// which must succeed: its results.
fn run_in(d: &Path, configured: bool, db: &str) -> Vec<serde_json::Value> {
    let config: &[&str] = if configured {
        &["--config", "leadgate.toml"]
    } else {
        &[]
    };
    let db = location(db);
    let args = [
        "--db",
        db.as_str(),
        "run",
        "--input",
        "in.csv",
        "--output",
        "out.ndjson",
        "-q",
    ];
    ok(d, &[config, &args[..]].concat());
    lines(&d.join("out.ndjson"))
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn codes(v: &serde_json::Value) -> Vec<String> {
    v["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn run_writes_one_result_per_record_in_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.csv"),
        "E-mail,First Name,Last Name,Phone,Country,Company,utm_campaign\n\
         JANE@ACME.COM,JANE,o'neil,(415) 555-2671,USA,\"Acme, Inc.\",spring\n\
         not-an-email,,,,,,\n\
         bob@mailinator.com,Bob,Smith,,,,\n",
    )
    .unwrap();
    let out = leadgate(dir.path())
        .args([
            "run",
            "--input",
            "in.csv",
            "--output",
            "out.ndjson",
            "--db",
            "store.db",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("E-mail → email") && err.contains("utm_campaign → custom.utm_campaign"),
        "{err}"
    );
    assert!(
        err.contains("accepted") && err.contains("top issues"),
        "{err}"
    );

    let results = lines(&dir.path().join("out.ndjson"));
    assert_eq!(results.len(), 3);
    let l: Vec<u64> = results
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(l, [1, 2, 3]);
    let status: Vec<&str> = results
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(status, ["accepted", "rejected", "review"]);

    let jane = &results[0]["lead"];
    assert_eq!(jane["email"], "JANE@acme.com");
    assert_eq!(jane["phone"], "+14155552671");
    assert_eq!(jane["first_name"], "Jane");
    assert_eq!(jane["last_name"], "O'Neil");
    assert_eq!(jane["country"], "US");
    assert_eq!(jane["company_key"], "acme");
    assert_eq!(jane["domain"], "acme.com");
    assert_eq!(jane["custom"][0]["key"], "utm_campaign");
    assert_eq!(results[0]["lead_id"], jane["id"]);

    assert_eq!(codes(&results[1]), ["email.syntax", "contact.missing"]);
    let issue = &results[1]["issues"][0];
    assert_eq!(issue["field"], "email");
    assert_eq!(issue["severity"], "warning");
    assert!(issue["message"].as_str().unwrap().contains("not-an-email"));
    assert_eq!(codes(&results[2]), ["email.disposable"]);
    assert!(dir.path().join("store.db").exists());
}

#[test]
fn malformed_records_are_rejected_with_a_reason_never_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv =
        b"email,company\nok1@acme.com,Acme\n\"broken@acme.com,Acme\nok2@acme.com,Beta\n".to_vec();
    csv.extend_from_slice(b"bad@acme.com,Caf\xe9\nok3@acme.com,Gamma,extra\nok4@acme.com,Delta\n");
    std::fs::write(dir.path().join("in.csv"), csv).unwrap();
    let out = leadgate(dir.path())
        .args([
            "run",
            "--input",
            "in.csv",
            "--output",
            "out.ndjson",
            "--db",
            ":memory:",
            "-q",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let results = lines(&dir.path().join("out.ndjson"));
    let got: Vec<(String, String)> = results
        .iter()
        .map(|r| {
            (
                r["status"].as_str().unwrap().to_string(),
                codes(r).join(","),
            )
        })
        .collect();
    let want = [
        ("accepted", ""),
        ("rejected", "record.unterminated_quote"),
        ("accepted", ""),
        ("rejected", "record.encoding"),
        ("rejected", "record.field_count"),
        ("accepted", ""),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(got, want);
    assert!(results[1]["lead"].is_null());
    assert!(
        results[3]["issues"][0]["message"]
            .as_str()
            .unwrap()
            .contains("UTF-8")
    );
}

#[test]
fn ndjson_from_stdin_to_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = leadgate(dir.path())
        .args([
            "run", "--input", "-", "--format", "ndjson", "--output", "-", "--db", ":memory:", "-q",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"{\"email\":\"a@acme.com\",\"source\":\"form\"}\nnot json\n{\"Email Address\":\"b@acme.io\"}\n")
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let results: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["lead"]["source"], "form");
    assert_eq!(codes(&results[1]), ["record.json"]);
    assert_eq!(results[2]["lead"]["email"], "b@acme.io");
}

#[test]
fn a_misbehaving_component_is_contained_and_the_next_lead_processed() {
    let dir = tempfile::tempdir().unwrap();
    let chaos = components().join("fixtures/chaos.wasm");
    std::fs::write(
        dir.path().join("in.csv"),
        "email,company\na@x.com,fine\nb@x.com,loop\nc@x.com,fine\nd@x.com,hog\ne@x.com,fine\nf@x.com,panic\ng@x.com,fine\n",
    )
    .unwrap();
    let config = format!(
        // A deadline generous enough that the hog reaches its memory limit
        // first even on a loaded machine; small batches keep the looping
        // lead's batch deadline (deadline × batch size) short.
        "tenant = \"t\"\n[limits]\ndeadline_ms = 1000\nmemory_mib = 16\nbatch_size = 2\n[validate]\ncomponent = {:?}\n",
        chaos.display().to_string()
    );
    let out = run_configured(dir.path(), &config, &["--db", location("s.db").as_str()]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "exceptions give exit code 3: {}",
        stderr(&out)
    );
    let results = lines(&dir.path().join("out.ndjson"));
    let got: Vec<(&str, String)> = results
        .iter()
        .map(|r| (r["status"].as_str().unwrap(), codes(r).join(",")))
        .collect();
    assert_eq!(
        got,
        [
            ("accepted", String::new()),
            ("exception", "component.timeout".into()),
            ("accepted", String::new()),
            ("exception", "component.memory".into()),
            ("accepted", String::new()),
            ("exception", "component.trap".into()),
            ("accepted", String::new()),
        ]
    );
    let panic_msg = results[5]["issues"][0]["message"].as_str().unwrap();
    assert!(
        panic_msg.contains("panic on cue"),
        "the guest's panic message is kept: {panic_msg}"
    );
    assert_eq!(
        results[1]["lead"]["email"], "b@x.com",
        "the lead itself is kept"
    );

    let listed = leadgate(dir.path())
        .args(["--db", location("s.db").as_str(), "exceptions", "--json"])
        .output()
        .unwrap();
    let items: Vec<serde_json::Value> = String::from_utf8(listed.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["code"], "component.timeout");
}

#[test]
fn a_component_of_the_wrong_world_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = components().join("fixtures/wrong-world.wasm");
    std::fs::write(dir.path().join("in.csv"), "email\na@x.com\n").unwrap();
    let config = format!(
        "[validate]\ncomponent = {:?}\n",
        wrong.display().to_string()
    );
    let out = run_configured(dir.path(), &config, &["--db", ":memory:"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("does not implement the leadgate:plugin/validator@0.1.0 world")
            && err.contains("leadgate-fixture:greeter/greet"),
        "{err}"
    );
}

#[test]
fn configuration_mistakes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.csv"), "email\na@x.com\n").unwrap();
    let run = |config: &str| {
        let out = run_configured(dir.path(), config, &["--db", ":memory:"]);
        assert_eq!(out.status.code(), Some(1));
        stderr(&out)
    };
    let err = run("[validate.settings]\ndefault_region = \"Mars\"\n");
    assert!(
        err.contains("default_region") && err.contains("Mars"),
        "{err}"
    );
    let err = run("[validate]\ncomponent = \"missing.wasm\"\n");
    assert!(err.contains("missing.wasm"), "{err}");
    let err = run("[limits]\ndeadline_ms = 0\n");
    assert!(err.contains("deadline_ms"), "{err}");
    let out = leadgate(dir.path())
        .args([
            "run", "--input", "in.csv", "--output", "o.ndjson", "--map", "email",
        ])
        .output()
        .unwrap();
    assert!(stderr(&out).contains("COLUMN=FIELD"), "{}", stderr(&out));
}

#[test]
fn the_sample_generator_and_eval_agree_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ok = leadgate(d)
        .args([
            "sample", "--count", "400", "--seed", "3", "--output", "s.csv", "--truth", "t.csv",
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::write(
        d.join("leadgate.toml"),
        "[validate.settings]\ndefault_region = \"US\"\n",
    )
    .unwrap();
    let out = leadgate(d)
        .args([
            "--config",
            "leadgate.toml",
            "run",
            "--input",
            "s.csv",
            "--output",
            "r.ndjson",
            "--db",
            ":memory:",
            "-q",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let eval = leadgate(d)
        .args(["eval", "--results", "r.ndjson", "--truth", "t.csv"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&eval.stdout);
    assert!(text.contains("status:       100.00%"), "{text}");
    assert!(text.contains("issue codes:  100.00%"), "{text}");
}

#[test]
fn the_bundled_sample_file_is_what_the_generator_makes() {
    let dir = tempfile::tempdir().unwrap();
    let ok = leadgate(dir.path())
        .args([
            "sample",
            "--count",
            "2000",
            "--seed",
            "7",
            "--output",
            "s.csv",
            "--truth",
            "t.csv",
            "--companies",
            "c.csv",
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let ok = leadgate(dir.path())
        .args([
            "sample",
            "--count",
            "5000",
            "--seed",
            "21",
            "--output",
            "x.csv",
            "--labelled",
            "l.csv",
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    for (made, name) in [
        ("s.csv", "samples/leads.csv"),
        ("t.csv", "samples/leads.truth.csv"),
        ("l.csv", "samples/dedupe.labelled.csv"),
        ("c.csv", "samples/companies.csv"),
    ] {
        let made = std::fs::read(dir.path().join(made)).unwrap();
        let shipped = std::fs::read(root.join(name)).unwrap();
        assert!(
            made == shipped,
            "{name} is stale: regenerate it as docs/src/guide/samples.md says"
        );
    }
}

#[test]
fn scores_are_the_same_saved_in_one_batch_or_beside_the_scoring() {
    if on_postgres() {
        eprintln!("SQLite only: it reads the two SQLite files with SQLite's JSON functions");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(
        d,
        &[
            "sample", "--count", "6000", "--seed", "7", "--output", "all.csv",
        ],
    );
    // The same leads again, in two files: each run then scores fewer than
    // 4,096 leads, saved in one batch; the whole file's are saved by a
    // writer thread beside the scoring.
    // Flexible and bytes: some generated rows are broken on purpose.
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(d.join("all.csv"))
        .unwrap();
    let header = reader.byte_headers().unwrap().clone();
    let records: Vec<csv::ByteRecord> = reader.byte_records().map(|r| r.unwrap()).collect();
    for (name, part) in [("a.csv", &records[..3000]), ("b.csv", &records[3000..])] {
        let mut w = csv::WriterBuilder::new()
            .flexible(true)
            .from_path(d.join(name))
            .unwrap();
        w.write_byte_record(&header).unwrap();
        for r in part {
            w.write_byte_record(r).unwrap();
        }
        w.flush().unwrap();
    }
    let run = |input: &str, db: &str| {
        ok(
            d,
            &[
                "run",
                "--input",
                input,
                "--output",
                "/dev/null",
                "--db",
                location(db).as_str(),
                "-q",
            ],
        );
    };
    run("all.csv", "one.db");
    run("a.csv", "two.db");
    run("b.csv", "two.db");
    let totals = |db: &str| -> Vec<(String, i64)> {
        let c = rusqlite::Connection::open(d.join(db)).unwrap();
        let mut stmt = c
            .prepare(
                "SELECT json_extract(l.normalized, '$.email'), s.total
                   FROM scores s JOIN leads l ON l.id = s.lead_id
                  ORDER BY 1, 2",
            )
            .unwrap();
        stmt.query_map([], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                r.get(1)?,
            ))
        })
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
    };
    let (one, two) = (totals("one.db"), totals("two.db"));
    assert!(
        one.len() > 4096,
        "{} scored: the writer thread ran",
        one.len()
    );
    assert_eq!(one, two);
}

#[cfg(target_os = "linux")]
#[test]
fn a_run_that_cannot_write_its_results_still_records_what_it_processed() {
    let dir = tempfile::tempdir().unwrap();
    let ok = leadgate(dir.path())
        .args([
            "sample", "--count", "3000", "--seed", "1", "--output", "in.csv",
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    // /dev/full refuses every write: the results cannot be written.
    let out = leadgate(dir.path())
        .args([
            "run",
            "--input",
            "in.csv",
            "--output",
            "/dev/full",
            "--db",
            location("s.db").as_str(),
            "-q",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot write the results"),
        "{}",
        stderr(&out)
    );
    let store = leadgate_store::Store::open(&location_in(dir.path(), "s.db")).unwrap();
    let (status, totals) = store.run_status(1).unwrap().unwrap();
    assert_eq!(status, "failed");
    assert!(totals.total > 0);
    assert_eq!(
        store.count("leads").unwrap(),
        totals.total,
        "every processed lead is in the store"
    );
}

/// Runs `leadgate` with `args` in `dir`; returns the output, asserting
/// the exit code.
const PEOPLE: &str = "email,first_name,last_name,phone,company,city,postcode,country,marketing opt-in\n\
    william.smith@acme.com,William,Smith,+44 20 7946 0123,Acme Ltd,London,SW1A 1AA,GB,yes\n\
    anna.kowalski@globex.de,Anna,Kowalski,+49 30 12345678,Globex GmbH,Berlin,10115,DE,yes\n";

#[test]
fn within_batch_duplicates_are_found_and_linked_to_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut csv = PEOPLE.to_string();
    // The same William, as a nickname with a Gmail-style alias at work and
    // the phone in national format.
    csv.push_str("William.Smith+crm@acme.com,Bill,Smith,020 7946 0123,\"Acme, Limited\",London,SW1A1AA,United Kingdom,yes\n");
    std::fs::write(d.join("in.csv"), csv).unwrap();
    let out = run_configured(d, "", &["--db", location("s.db").as_str()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r = lines(&d.join("out.ndjson"));
    assert_eq!(r[0]["status"], "accepted");
    assert_eq!(r[1]["status"], "accepted");
    assert_eq!(r[2]["status"], "duplicate", "{}", r[2]);
    assert_eq!(r[2]["duplicate_of"], r[0]["lead_id"]);
    assert!(r[2]["match_probability"].as_f64().unwrap() > 0.9);
    assert_eq!(
        r[2]["match"]["decision"], "link",
        "auto-merge is off by default"
    );
    let evidence = r[2]["match"]["evidence"].as_array().unwrap();
    let name = evidence
        .iter()
        .find(|e| e["field"] == "first_name")
        .unwrap();
    assert_eq!(name["level"], "nickname");
    assert!(stderr(&out).contains("duplicate"), "{}", stderr(&out));
}

#[test]
fn an_emails_own_issues_stay_on_every_result_line_whatever_dedupe_decides() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The same role address three times: a lead, its duplicate, and a
    // near-duplicate with another phone (review); then an address with a
    // bidirectional control, which is refused whatever else happens.
    std::fs::write(
        d.join("in.csv"),
        "email,first_name,last_name,phone,company,country\n\
         info@acme-widgets.com,Ann,Lee,+44 20 7946 0123,Acme Widgets,GB\n\
         INFO@acme-widgets.com,Ann,Lee,+44 20 7946 0123,Acme Widgets,GB\n\
         info@acme-widgets.com,Anne,Leigh,+44 20 7946 0999,Acme,GB\n\
         \"ann\u{202E}moc.x@acme-widgets.com\",Ann,Lee,+44 20 7946 0123,Acme Widgets,GB\n",
    )
    .unwrap();
    let r = run_in(d, false, "s.db");
    assert_eq!(r.len(), 4);
    assert_ne!(r[1]["status"], "accepted", "{}", r[1]);
    for line in &r[..3] {
        let email: Vec<&str> = line["issues"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["field"] == "email")
            .map(|i| i["code"].as_str().unwrap())
            .collect();
        assert_eq!(email, ["email.role_account"], "{line}");
    }
    let refused: Vec<&str> = r[3]["issues"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["field"] == "email")
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert_eq!(refused, ["email.bidi_control"], "{}", r[3]);
    assert!(r[3]["lead"]["email"].is_null(), "{}", r[3]);
}

#[test]
fn an_opt_out_never_merges_silently_it_goes_to_review() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut csv = PEOPLE.to_string();
    csv.push_str(
        "william.smith@acme.com,William,Smith,+44 20 7946 0123,Acme Ltd,London,SW1A 1AA,GB,no\n",
    );
    std::fs::write(d.join("in.csv"), csv).unwrap();
    let out = run_configured(
        d,
        "[dedupe]\nauto_merge_enabled = true\n",
        &["--db", location("s.db").as_str()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r = lines(&d.join("out.ndjson"));
    assert_eq!(r[2]["status"], "review", "{}", r[2]);
    assert!(codes(&r[2]).contains(&"dedupe.consent_conflict".to_string()));
    assert!(r[2].get("duplicate_of").is_none());
    let list = ok(
        d,
        &[
            "--config",
            "leadgate.toml",
            "--db",
            location("s.db").as_str(),
            "review",
            "list",
            "--json",
        ],
    );
    let items: Vec<serde_json::Value> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["reason"], "consent_conflict");
    assert_eq!(items[0]["lead_b"], r[2]["lead_id"]);

    // The reviewer merges: the golden record keeps the opt-out.
    let id = items[0]["id"].to_string();
    ok(
        d,
        &[
            "--config",
            "leadgate.toml",
            "--db",
            location("s.db").as_str(),
            "review",
            "decide",
            &id,
            "merge",
            "--reviewer",
            "ann",
        ],
    );
    let master = r[0]["lead_id"].as_str().unwrap();
    let shown = ok(d, &["--db", location("s.db").as_str(), "show", master]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(
        shown["golden"]["lead"]["consent"][0]["granted"], false,
        "{shown}"
    );
    // Decided once: not asked again.
    let again = leadgate(d)
        .args([
            "--config",
            "leadgate.toml",
            "--db",
            location("s.db").as_str(),
            "review",
            "decide",
            &id,
            "distinct",
            "--reviewer",
            "bob",
        ])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already decided"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn import_then_run_merges_and_unmerge_restores_the_originals_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("leadgate.toml"),
        "[dedupe]\nauto_merge_enabled = true\n",
    )
    .unwrap();
    std::fs::write(d.join("crm.csv"), PEOPLE).unwrap();
    ok(
        d,
        &[
            "--config",
            "leadgate.toml",
            "--db",
            location("s.db").as_str(),
            "import",
            "--input",
            "crm.csv",
            "--output",
            "imported.ndjson",
            "-q",
        ],
    );
    let imported = lines(&d.join("imported.ndjson"));
    assert_eq!(imported.len(), 2);
    let master = imported[0]["lead_id"].as_str().unwrap().to_string();
    assert_eq!(imported[0]["lead"]["source"], "crm");
    let before = ok(d, &["--db", location("s.db").as_str(), "show", &master]).stdout;

    std::fs::write(
        d.join("in.csv"),
        "email,first_name,last_name,phone,job_title\nwilliam.smith@acme.com,Bill,Smith,,CTO\n",
    )
    .unwrap();
    let r = run_in(d, true, "s.db");
    assert_eq!(r[0]["status"], "duplicate");
    assert_eq!(r[0]["duplicate_of"], master.as_str());
    assert_eq!(r[0]["match"]["decision"], "merge");
    let dup = r[0]["lead_id"].as_str().unwrap().to_string();
    let dup_before: serde_json::Value =
        serde_json::from_slice(&ok(d, &["--db", location("s.db").as_str(), "show", &dup]).stdout)
            .unwrap();

    let merged: serde_json::Value = serde_json::from_slice(
        &ok(d, &["--db", location("s.db").as_str(), "show", &master]).stdout,
    )
    .unwrap();
    let golden = &merged["golden"];
    assert_eq!(golden["lead"]["job_title"], "CTO", "most recent non-empty");
    assert_eq!(
        golden["lead"]["phone"], "+442079460123",
        "an empty value never wins"
    );
    assert_eq!(golden["members"].as_array().unwrap().len(), 2);

    let out = ok(
        d,
        &[
            "--config",
            "leadgate.toml",
            "--db",
            location("s.db").as_str(),
            "unmerge",
            &dup,
        ],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("undid merge"));
    let after: serde_json::Value =
        serde_json::from_slice(&ok(d, &["--db", location("s.db").as_str(), "show", &dup]).stdout)
            .unwrap();
    assert_eq!(after["raw"], dup_before["raw"]);
    assert_eq!(after["normalized"], dup_before["normalized"]);
    assert_eq!(after["status"], "accepted");
    assert!(after["master_id"].is_null());
    let master_after = ok(d, &["--db", location("s.db").as_str(), "show", &master]).stdout;
    // The master is exactly as it was before the merge, merges aside.
    let strip = |bytes: &[u8]| {
        let mut v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        v["merges"] = serde_json::Value::Null;
        v
    };
    assert_eq!(strip(&master_after), strip(&before));
    // Nothing left to undo is an error that says so.
    let again = leadgate(d)
        .args([
            "--config",
            "leadgate.toml",
            "--db",
            location("s.db").as_str(),
            "unmerge",
            &dup,
        ])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("nothing to undo"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn batch_dedupe_writes_pairs_and_clusters_and_applies_only_without_dry_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // An old CRM export: no email, no phone, only names and an address.
    std::fs::write(
        d.join("old.csv"),
        "first_name,last_name,street,city,postcode\n\
         Robert,O'Brien,4 Elm Road,Dublin,D02 X285\n\
         Mary,Jones,1 High Street,Cork,T12 AB34\n\
         Bob,O'Brien,4 Elm Rd,Dublin,D02X285\n\
         Robert,OBrien,4 Elm Road,Dublin,D02 X285\n",
    )
    .unwrap();
    std::fs::write(
        d.join("leadgate.toml"),
        "[dedupe]\nauto_merge_enabled = true\n",
    )
    .unwrap();
    let out = ok(
        d,
        &[
            "--config",
            "leadgate.toml",
            "--db",
            location("s.db").as_str(),
            "dedupe",
            "--input",
            "old.csv",
            "--pairs",
            "pairs.csv",
            "--clusters",
            "clusters.ndjson",
            "--dry-run",
        ],
    );
    let err = stderr(&out);
    assert!(
        err.contains("pairs compared") && err.contains("dry run"),
        "{err}"
    );
    let pairs = std::fs::read_to_string(d.join("pairs.csv")).unwrap();
    let mut rows = pairs.lines();
    assert_eq!(rows.next(), Some("line_a,line_b,probability,decision"));
    let found: Vec<(u64, u64)> = rows
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[1].parse().unwrap())
        })
        .collect();
    assert!(
        found.contains(&(1, 3)) && found.contains(&(1, 4)),
        "{pairs}"
    );
    assert!(!found.iter().any(|(a, b)| *a == 2 || *b == 2), "{pairs}");
    let clusters = lines(&d.join("clusters.ndjson"));
    assert_eq!(clusters.len(), 1);
    assert_eq!(clusters[0]["lines"], serde_json::json!([1, 3, 4]));
    assert!(!d.join("s.db").exists(), "a dry run writes no store");

    let out = ok(
        d,
        &[
            "--config",
            "leadgate.toml",
            "--db",
            location("s.db").as_str(),
            "dedupe",
            "--input",
            "old.csv",
            "--pairs",
            "pairs.csv",
        ],
    );
    assert!(stderr(&out).contains("applied"), "{}", stderr(&out));
    let store = leadgate_store::Store::open(&location_in(d, "s.db")).unwrap();
    assert_eq!(store.count("leads").unwrap(), 4);
    assert!(store.count("merges").unwrap() >= 1);
    assert!(store.count("golden").unwrap() >= 1);
}

#[test]
fn dedupe_bad_input_gives_a_clear_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("empty.csv"), "").unwrap();
    let out = leadgate(d)
        .args([
            "dedupe",
            "--input",
            "empty.csv",
            "--pairs",
            "p.csv",
            "--dry-run",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("empty.csv"), "{}", stderr(&out));

    // A million-character field is rejected as a record, the rest go on.
    let mut csv = String::from("first_name,last_name,postcode\nAnna,Smith,AB1 2CD\n");
    csv.push_str(&"x".repeat(1_000_000));
    csv.push_str(",Smith,AB1 2CD\nAnna,Smith,AB1 2CD\n");
    std::fs::write(d.join("big.csv"), csv).unwrap();
    let out = ok(
        d,
        &[
            "dedupe",
            "--input",
            "big.csv",
            "--pairs",
            "p.csv",
            "--dry-run",
        ],
    );
    assert!(stderr(&out).contains("1 left out"), "{}", stderr(&out));
    let pairs = std::fs::read_to_string(d.join("p.csv")).unwrap();
    assert!(pairs.contains("1,3,"), "{pairs}");

    // The truth column must exist.
    refused(
        d,
        &[
            "eval",
            "dedupe",
            "--input",
            "big.csv",
            "--truth-column",
            "person",
        ],
        "--truth-column person",
    );
}

/// The command exits 1 with `needle` in what it says.
fn refused(dir: &Path, args: &[&str], needle: &str) {
    let out = leadgate(dir).args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains(needle), "{}", stderr(&out));
}

#[test]
fn eval_dedupe_on_the_bundled_labelled_data_meets_the_targets() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = ok(
        &root,
        &[
            "eval",
            "dedupe",
            "--input",
            "samples/dedupe.labelled.csv",
            "--truth-column",
            "person",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        number(&text, "at the review threshold", "F1 ") >= 0.97,
        "{text}"
    );
    assert!(
        number(&text, "auto-merge decisions", "precision ") >= 0.99,
        "{text}"
    );
}

/// The number after `key` on the first line of `text` holding `label`.
fn number(text: &str, label: &str, key: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.contains(label))
        .unwrap_or_else(|| panic!("no {label}: {text}"));
    let rest = &line[line.find(key).unwrap_or_else(|| panic!("{line}")) + key.len()..];
    rest.split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches(',')
        .parse()
        .unwrap()
}

#[test]
fn eval_dedupe_estimates_on_the_file_and_reports_its_passes_unless_a_model_is_pinned() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let args = |extra: &[&'static str]| {
        let mut a = vec![
            "eval",
            "dedupe",
            "--input",
            "samples/dedupe.labelled.csv",
            "--truth-column",
            "person",
        ];
        a.extend_from_slice(extra);
        a
    };
    let out = ok(&root, &args(&[]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("model: estimated on this file: EM over"),
        "{text}"
    );
    for pass in ["pass e ", "pass np", "pass nv", "pass gp"] {
        assert!(text.contains(pass), "{pass}: {text}");
    }
    let out = ok(&root, &args(&["--model", "configured"]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("model: the configured model (pinned)"),
        "{text}"
    );
    // A model file that is not there is refused by name.
    refused(
        &root,
        &args(&["--model", "no-such-model.json"]),
        "no-such-model.json",
    );
}

#[test]
fn dedupe_train_without_labels_writes_the_model_estimated_on_the_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.json");
    let out = ok(
        &root,
        &[
            "dedupe-train",
            "--input",
            "samples/dedupe.labelled.csv",
            "--output",
            model.to_str().unwrap(),
        ],
    );
    assert!(stderr(&out).contains("EM on"), "{}", stderr(&out));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&model).unwrap()).unwrap();
    assert!(json["prior"].as_f64().unwrap() < 0.01, "{json}");
    assert!(
        json["term_frequencies"]["last_name"]["values"].is_object(),
        "{json}"
    );
}

#[test]
fn dedupe_train_from_the_store_estimates_on_its_leads_and_the_thresholds_keep_their_meaning() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let db = location(db.to_str().unwrap());
    let db = db.as_str();
    let model = dir.path().join("model.json");
    let model = model.to_str().unwrap();
    let train = [
        "--db",
        db,
        "dedupe-train",
        "--from-store",
        "--output",
        model,
    ];
    // A store with no leads of the tenant is refused, naming the tenant.
    refused(&root, &train, "no keyed leads of tenant default");
    assert!(!Path::new(model).exists());

    let imported = dir.path().join("imported.ndjson");
    ok(
        &root,
        &[
            "--db",
            db,
            "import",
            "--input",
            "samples/dedupe.labelled.csv",
            "--output",
            imported.to_str().unwrap(),
            "-q",
        ],
    );
    let out = ok(&root, &train);
    let text = stderr(&out);
    for needle in [
        "stored leads, ",
        "pass e ",
        "EM over",
        "at the tenant's thresholds",
        "configured model",
        "estimated model",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model).unwrap()).unwrap();
    assert!(
        json["trained_on"]
            .as_str()
            .unwrap()
            .contains("stored leads of tenant default"),
        "{json}"
    );
    assert!(json["prior"].as_f64().unwrap() < 0.01, "{json}");
    assert!(
        json["term_frequencies"]["first_name"]["values"].is_object(),
        "{json}"
    );

    // The store's model, pinned, still means what the thresholds say on
    // the labelled file: a pair at or above auto_merge is a duplicate.
    let out = ok(
        &root,
        &[
            "eval",
            "dedupe",
            "--input",
            "samples/dedupe.labelled.csv",
            "--truth-column",
            "person",
            "--model",
            model,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("model: the configured model (pinned)"),
        "{text}"
    );
    assert!(
        number(&text, "at the review threshold", "F1 ") >= 0.97,
        "{text}"
    );
    assert!(
        number(&text, "auto-merge decisions", "precision ") >= 0.99,
        "{text}"
    );

    // It learns from the store alone.
    let out = leadgate(&root)
        .args([
            "--db",
            db,
            "dedupe-train",
            "--from-store",
            "--reviews",
            "--output",
            model,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--reviews"), "{}", stderr(&out));
}

/// A lead CSV whose companies' domains tell the fake API how to misbehave.
fn enrich_leads(dir: &Path, domains: &[&str]) {
    let mut csv = String::from("email,first_name,last_name,job_title,company,country\n");
    for (i, d) in domains.iter().enumerate() {
        csv.push_str(&format!("p{i}@{d},Pat,Lee{i},VP Sales,,US\n"));
    }
    std::fs::write(dir.join("in.csv"), csv).unwrap();
}

fn http_provider_config(url: &str, extra: &str) -> String {
    format!(
        r#"tenant = "t"
[dedupe]
enabled = false
[enrich]
budget_ms = 2500
concurrency = 8
[[enrich.providers]]
name = "api"
kind = "http"
lookup = "company"
url = "{url}/v1/companies?domain={{domain}}"
record = "/data"
fields = {{ name = "/legalName", industry = "/category/industry", employee_range = "/metrics/employeesRange" }}
timeout_ms = 3000
max_retries = 2
backoff_base_ms = 20
backoff_max_ms = 100
max_retry_wait_ms = 1500
breaker_failures = 50
rate_per_second = 200
burst = 20
{extra}
[classify]
required = ["email", "company", "country", "industry"]
"#
    )
}

#[test]
fn every_lead_gets_a_state_when_the_provider_misbehaves_and_the_queue_catches_up() {
    use fixture_fake_provider::{FakeProvider, Reply, company_json};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let healthy = Arc::new(AtomicBool::new(false));
    let h = healthy.clone();
    let server = FakeProvider::start(move |r| {
        let domain = r.path.rsplit('=').next().unwrap_or("").to_string();
        if h.load(Ordering::SeqCst) {
            return Reply::Json(company_json(&domain));
        }
        let first = r.nth_for_path == 0;
        match domain.split('-').next().unwrap_or("") {
            "slow" => Reply::Slow(std::time::Duration::from_secs(5), company_json(&domain)),
            "down" => Reply::Status(503),
            "flaky" if first => Reply::Status(500),
            "limited" if first => Reply::TooMany {
                retry_after_secs: 1,
            },
            "broken" => Reply::Malformed,
            "reset" if first => Reply::Reset,
            "unknown" => Reply::NotFound,
            _ => Reply::Json(company_json(&domain)),
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let domains = [
        "ok-1.com",
        "slow-1.com",
        "down-1.com",
        "flaky-1.com",
        "limited-1.com",
        "broken-1.com",
        "reset-1.com",
        "unknown-1.com",
        "ok-2.com",
        "ok-1.com",
    ];
    enrich_leads(dir.path(), &domains);
    let out = run_configured(
        dir.path(),
        &http_provider_config(&server.url(), ""),
        &["--db", location("s.db").as_str()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let results = lines(&dir.path().join("out.ndjson"));
    assert_eq!(results.len(), domains.len());
    let state = |i: usize| {
        results[i]["qualification"]["state"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let field = |i: usize, f: &str| results[i]["enrichment"]["fields"][f]["value"].clone();
    for (i, r) in results.iter().enumerate() {
        assert!(
            r["qualification"]["state"].is_string(),
            "line {i} has a state: {r}"
        );
        assert!(
            r["enrichment"]["status"].is_string(),
            "line {i} is enriched: {r}"
        );
    }
    // Answered (after retries where needed): company and industry filled.
    for i in [0, 3, 4, 6, 8, 9] {
        assert_eq!(
            field(i, "industry"),
            "Software",
            "line {}: {}",
            i + 1,
            results[i]
        );
        assert_eq!(state(i), "qualified", "line {}: {}", i + 1, results[i]);
        assert!(results[i]["lead"]["company"].is_string());
    }
    // Slow past the budget, down, malformed: the lead goes on, flagged and queued.
    for (i, why) in [(1, "pending"), (2, "unavailable"), (5, "unavailable")] {
        let requeued = results[i]["enrichment"]["requeued"].as_str().unwrap_or("");
        assert!(requeued.starts_with(why), "line {}: {}", i + 1, results[i]);
        // The company name is only a guess from the domain: a person checks.
        assert_eq!(state(i), "needs_review", "line {}: {}", i + 1, results[i]);
        let reasons = results[i]["qualification"]["reasons"].to_string();
        assert!(reasons.contains("missing.industry"), "{reasons}");
        assert!(reasons.contains("low_confidence.company"), "{reasons}");
        assert!(reasons.contains("enrichment."), "{reasons}");
    }
    // Not known: nothing to wait for, not queued; the company is derived.
    assert!(results[7]["enrichment"]["requeued"].is_null());
    assert_eq!(field(7, "company"), "Unknown 1");
    assert!(
        stderr(&out).contains("enrichment providers:"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("http_503"), "{}", stderr(&out));

    // The provider recovers; the queue catches up.
    healthy.store(true, Ordering::SeqCst);
    let again = leadgate(dir.path())
        .args([
            "--config",
            "leadgate.toml",
            "--db",
            location("s.db").as_str(),
            "enrich",
            "--queued",
            "--output",
            "re.ndjson",
        ])
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("3 taken from the queue · 3 done · 0 still queued"),
        "{}",
        stderr(&again)
    );
    let re = lines(&dir.path().join("re.ndjson"));
    assert_eq!(re.len(), 3);
    for r in &re {
        assert_eq!(r["qualification"]["state"], "qualified", "{r}");
        assert_eq!(r["enrichment"]["fields"]["industry"]["value"], "Software");
    }
    let empty = leadgate(dir.path())
        .args([
            "--config",
            "leadgate.toml",
            "--db",
            location("s.db").as_str(),
            "enrich",
            "--queued",
        ])
        .output()
        .unwrap();
    assert!(
        stderr(&empty).contains("0 taken from the queue"),
        "{}",
        stderr(&empty)
    );
    let shown = leadgate(dir.path())
        .args([
            "--db",
            location("s.db").as_str(),
            "show",
            re[0]["lead_id"].as_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(shown.status.success());
}

#[test]
fn the_cache_outlives_the_process_and_serves_stale_when_the_provider_is_down() {
    use fixture_fake_provider::{FakeProvider, Reply, company_json};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let down = Arc::new(AtomicBool::new(false));
    let d = down.clone();
    let server = FakeProvider::start(move |r| {
        if d.load(Ordering::SeqCst) {
            Reply::Status(500)
        } else {
            Reply::Json(company_json(r.path.rsplit('=').next().unwrap_or("")))
        }
    });
    let dir = tempfile::tempdir().unwrap();
    enrich_leads(dir.path(), &["acme.com", "globex.com"]);
    // A TTL of one second: the second run finds the entries stale.
    let config = http_provider_config(&server.url(), "cache_ttl_secs = 1");
    let out = run_configured(dir.path(), &config, &["--db", location("s.db").as_str()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.requests().len(), 2);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    down.store(true, Ordering::SeqCst);
    let out = run_configured(dir.path(), &config, &["--db", location("s.db").as_str()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let results = lines(&dir.path().join("out.ndjson"));
    for r in &results {
        let industry = &r["enrichment"]["fields"]["industry"];
        assert_eq!(industry["value"], "Software", "stale data served: {r}");
        assert!(
            industry["confidence"].as_f64().unwrap() < 0.8,
            "discounted: {r}"
        );
        assert!(
            r["enrichment"]["requeued"]
                .as_str()
                .unwrap()
                .starts_with("stale")
        );
        assert!(codes(r).contains(&"enrich.stale".to_string()), "{r}");
    }
    assert!(stderr(&out).contains("stale 2"), "{}", stderr(&out));
}

#[test]
fn a_misbehaving_enricher_is_contained_and_the_lead_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let chaos = components().join("fixtures/chaos-enrich.wasm");
    std::fs::write(
        dir.path().join("companies.csv"),
        "domain,name,industry\nacme.com,Acme,Software\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("in.csv"),
        "email,company\na@acme.com,fine\nb@acme.com,loop\nc@acme.com,fine\nd@acme.com,panic\ne@acme.com,fine\n",
    )
    .unwrap();
    let config = format!(
        "tenant = \"t\"\n[limits]\ndeadline_ms = 200\nbatch_size = 8\n[dedupe]\nenabled = false\n[classify]\nrequired = [\"email\", \"company\"]\n[enrich]\ncomponent = {:?}\n[[enrich.providers]]\nname = \"local\"\nkind = \"local\"\ncompanies = \"companies.csv\"\n",
        chaos.display().to_string()
    );
    let out = run_configured(dir.path(), &config, &["--db", location("s.db").as_str()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let results = lines(&dir.path().join("out.ndjson"));
    let got: Vec<(&str, Option<&str>, &str)> = results
        .iter()
        .map(|r| {
            (
                r["status"].as_str().unwrap(),
                r["enrichment"]["fields"]["industry"]["value"].as_str(),
                r["qualification"]["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("accepted", Some("Software"), "qualified"),
            ("accepted", None, "incomplete"),
            ("accepted", Some("Software"), "qualified"),
            ("accepted", None, "incomplete"),
            ("accepted", Some("Software"), "qualified"),
        ]
    );
    assert!(codes(&results[1]).contains(&"component.timeout".to_string()));
    assert!(codes(&results[3]).contains(&"component.trap".to_string()));
    assert!(
        results[3]["qualification"]["reasons"]
            .to_string()
            .contains("enrichment.failed"),
        "{}",
        results[3]
    );
}

#[test]
fn enrichment_configuration_mistakes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    enrich_leads(dir.path(), &["acme.com"]);
    for (config, expect) in [
        (
            "[[enrich.providers]]\nname = \"list\"\nkind = \"local\"\ncompanies = \"missing.csv\"\n",
            "missing.csv",
        ),
        (
            "[[enrich.providers]]\nname = \"api\"\nkind = \"http\"\nlookup = \"company\"\nurl = \"http://127.0.0.1:9/{domain}\"\nfields = { industy = \"/x\" }\n",
            "fields.industy",
        ),
        (
            "[[enrich.providers]]\nname = \"api\"\nkind = \"http\"\nlookup = \"company\"\nurl = \"http://127.0.0.1:9/{domain}\"\nfields = { industry = \"/x\" }\nauth_env = \"LEADGATE_TEST_NO_SUCH_KEY\"\n",
            "LEADGATE_TEST_NO_SUCH_KEY",
        ),
        (
            "[[enrich.providers]]\nname = \"api\"\nkind = \"http\"\nrate_per_second = 0\n",
            "rate_per_second",
        ),
        ("[enrich.settings]\nwant = [\"industy\"]\n", "industy"),
        ("[classify]\nrequired = [\"emial\"]\n", "emial"),
    ] {
        let out = run_configured(dir.path(), config, &["--db", ":memory:"]);
        assert_eq!(out.status.code(), Some(1), "{config}: {}", stderr(&out));
        assert!(stderr(&out).contains(expect), "{config}: {}", stderr(&out));
    }
}

/// Leads of one account and one free-mail lead, stored by `run`.
fn scoring_store(dir: &Path, config: &str) {
    std::fs::write(
        dir.join("in.csv"),
        "email,first_name,last_name,company,job_title,country\n\
         ann@acme-robotics.com,Ann,Lee,Acme Robotics,VP Sales,US\n\
         bob@acme-robotics.com,Bob,Kim,Acme Robotics,Engineer,US\n\
         cyd@acme-robotics.com,Cyd,Ray,Acme Robotics,Analyst,US\n\
         dee@gmail.com,Dee,Fox,,Student,US\n",
    )
    .unwrap();
    let out = run_configured(dir, config, &["--db", location("s.db").as_str()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("scored 4 leads"), "{}", stderr(&out));
}

fn lead_id(dir: &Path, email: &str) -> String {
    lines(&dir.join("out.ndjson"))
        .into_iter()
        .find(|v| v["lead"]["email"] == email)
        .unwrap()["lead_id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn show(dir: &Path, id: &str) -> serde_json::Value {
    let out = ok(dir, &["--db", location("s.db").as_str(), "show", id]);
    serde_json::from_slice(&out.stdout).unwrap()
}

const SCORE_CONFIG: &str = "[enrich]\nenabled = false\n[score]\nthreshold = 60\nhysteresis = 10\njump = 0\npipeline = \"pipeline.ndjson\"\n";

#[test]
fn events_attach_idempotently_and_surface_a_lead_once_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    scoring_store(d, SCORE_CONFIG);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut events = String::new();
    for i in 0..6 {
        events.push_str(&format!(
            "{{\"id\": \"a{i}\", \"type\": \"page_view\", \"at\": {}, \"email\": \"ANN@acme-robotics.com\", \"url\": \"https://x.io/pricing\"}}\n",
            now - i * 3_600_000
        ));
    }
    events.push_str(&format!("{{\"id\": \"b1\", \"type\": \"email_click\", \"at\": {now}, \"email\": \"bob@acme-robotics.com\"}}\n"));
    events.push_str(&format!("{{\"id\": \"c1\", \"type\": \"trial_signup\", \"at\": {now}, \"email\": \"cyd@acme-robotics.com\"}}\n"));
    events.push_str(&format!(
        "{{\"id\": \"z1\", \"type\": \"reply\", \"at\": {now}, \"email\": \"zed@newco.io\"}}\n"
    ));
    events.push_str("{\"id\": \"x1\", \"type\": \"webinar\", \"at\": 1, \"email\": \"a@b.io\"}\n");
    std::fs::write(d.join("events.ndjson"), &events).unwrap();
    let out = ok(
        d,
        &[
            "--config",
            "leadgate.toml",
            "--db",
            location("s.db").as_str(),
            "events",
            "--input",
            "events.ndjson",
        ],
    );
    let err = stderr(&out);
    assert!(
        err.contains("10 read · 9 stored · 0 duplicates ignored · 1 rejected · 8 attached"),
        "{err}"
    );
    assert!(
        err.contains("event.type 1") && err.contains("line 10: type"),
        "{err}"
    );
    assert!(err.contains("1 waiting for their person"), "{err}");
    let surfaced = lines(&d.join("pipeline.ndjson"));
    let ann = lead_id(d, "ann@acme-robotics.com");
    assert_eq!(surfaced.len(), 1, "{surfaced:?}");
    assert_eq!(surfaced[0]["lead_id"], ann.as_str());
    assert_eq!(surfaced[0]["trigger"], "threshold");
    let codes: Vec<&str> = surfaced[0]["score"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"engagement.page_view.pricing"), "{codes:?}");
    assert!(codes.contains(&"intent.stakeholders"), "{codes:?}");
    // The same file again: every event is a duplicate, nothing surfaces again.
    let out = ok(
        d,
        &[
            "--config",
            "leadgate.toml",
            "--db",
            location("s.db").as_str(),
            "events",
            "--input",
            "events.ndjson",
        ],
    );
    assert!(
        stderr(&out).contains("0 stored · 9 duplicates ignored"),
        "{}",
        stderr(&out)
    );
    assert_eq!(lines(&d.join("pipeline.ndjson")).len(), 1);
    // Re-scoring while still above the threshold does not surface again.
    ok(
        d,
        &[
            "--config",
            "leadgate.toml",
            "--db",
            location("s.db").as_str(),
            "rescore",
        ],
    );
    assert_eq!(lines(&d.join("pipeline.ndjson")).len(), 1);
    let shown = show(d, &ann);
    assert!(
        shown["score"]["current"]["total"].as_u64().unwrap() >= 40,
        "{shown}"
    );
    assert_eq!(shown["score"]["above_threshold"], true);
    // The colleague's intent includes the account's activity.
    let bob = show(d, &lead_id(d, "bob@acme-robotics.com"));
    assert!(
        bob["score"]["current"]["intent"].as_f64().unwrap() > 30.0,
        "{bob}"
    );
    // The unknown person's event waits, and is attached when they appear.
    std::fs::write(
        d.join("in.csv"),
        "email,first_name,company\nzed@newco.io,Zed,Newco\n",
    )
    .unwrap();
    let out = run_configured(d, SCORE_CONFIG, &["--db", location("s.db").as_str()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let zed = show(d, &lead_id(d, "zed@newco.io"));
    let reasons = zed["score"]["current"]["reasons"].to_string();
    assert!(reasons.contains("engagement.reply"), "{zed}");
}

#[test]
fn bad_score_configuration_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("events.ndjson"), "").unwrap();
    for (config, expect) in [
        ("[score.settings]\nhalf_life_days = -3\n", "half_life_days"),
        ("[score.settings]\nhalflife = 3\n", "halflife"),
        ("[score]\nthreshold = 150\n", "score.threshold"),
        ("[score]\nhysteresis = 80\n", "score.hysteresis"),
        ("[score]\nwindow = 3\n", "window"),
    ] {
        std::fs::write(d.join("leadgate.toml"), config).unwrap();
        let out = leadgate(d)
            .args([
                "--config",
                "leadgate.toml",
                "--db",
                location("s.db").as_str(),
                "rescore",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{config}");
        assert!(stderr(&out).contains(expect), "{config}: {}", stderr(&out));
    }
}

/// A generated history export of `rows` rows at `d/h.csv`.
fn history(d: &Path, rows: usize) {
    let rows = rows.to_string();
    ok(
        d,
        &[
            "sample",
            "--count",
            "10",
            "--output",
            "l.csv",
            "--history",
            "h.csv",
            "--history-rows",
            &rows,
        ],
    );
}

#[test]
fn calibrate_reports_for_its_held_out_rows_what_score_says_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    history(d, 2000);
    for (kind, report) in [
        ("logistic", "logistic regression on"),
        ("gbt", "gradient-boosted trees on"),
    ] {
        let model = format!("model-{kind}.toml");
        let out = ok(
            d,
            &[
                "calibrate",
                "--input",
                "h.csv",
                "--outcome",
                "Converted",
                "--model-type",
                kind,
                "--holdout-output",
                "held.csv",
                "--output",
                &model,
            ],
        );
        assert!(stderr(&out).contains(report), "{}", stderr(&out));
        let text = std::fs::read_to_string(d.join(&model)).unwrap();
        assert_eq!(text.contains("[boost]"), kind == "gbt", "{kind}");
        ok(
            d,
            &[
                "score", "--input", "h.csv", "--model", &model, "--output", "s.ndjson", "-q",
            ],
        );
        let scored: std::collections::HashMap<u64, f64> = lines(&d.join("s.ndjson"))
            .iter()
            .map(|s| {
                (
                    s["line"].as_u64().unwrap(),
                    s["score"]["probability"].as_f64().unwrap(),
                )
            })
            .collect();
        let held = std::fs::read_to_string(d.join("held.csv")).unwrap();
        let mut n = 0;
        for row in held.lines().skip(1) {
            let (line, p) = row.split_once(',').unwrap();
            let (line, p): (u64, f64) = (line.parse().unwrap(), p.parse().unwrap());
            let q = scored[&line];
            assert!(
                (p - q).abs() <= 1e-9,
                "{kind}: line {line}: calibrate {p}, score {q}"
            );
            n += 1;
        }
        assert_eq!(n, 400, "{kind}: a fifth of the rows held out");
        let first = lines(&d.join("s.ndjson"));
        let code = first[0]["score"]["reasons"][0]["code"].as_str().unwrap();
        assert!(code.starts_with("model."), "{kind}: {code}");
    }
}

#[test]
fn an_attribute_validation_cannot_normalize_is_still_a_feature() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // `Country` feeds the lead's country, and "Atlantis Region" is no
    // country: it is kept as read, and it is what predicts conversion (80%
    // against 20%).
    let mut csv = String::from("Country,Visits,Converted\n");
    for i in 0..400 {
        let atlantis = i % 2 == 0;
        let converted = if atlantis { i % 10 != 0 } else { i % 10 == 1 };
        csv.push_str(&format!(
            "{},{},{}\n",
            if atlantis { "Atlantis Region" } else { "India" },
            i % 7,
            u8::from(converted)
        ));
    }
    std::fs::write(d.join("h.csv"), csv).unwrap();
    let out = ok(
        d,
        &[
            "calibrate",
            "--input",
            "h.csv",
            "--outcome",
            "Converted",
            "--model-type",
            "logistic",
            "--output",
            "m.toml",
        ],
    );
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.trim_start().starts_with("country"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("category, 2 of 2 values"), "{line}");
    let auc: f64 = err
        .lines()
        .find_map(|l| l.strip_prefix("ROC AUC"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(auc > 0.75, "{err}");
}

#[test]
fn calibrate_then_score_a_history_without_contact_fields() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    history(d, 3000);
    let out = ok(
        d,
        &[
            "calibrate",
            "--input",
            "h.csv",
            "--outcome",
            "Converted",
            "--output",
            "model.toml",
        ],
    );
    let err = stderr(&out);
    assert!(
        err.contains("Lead Number") && err.contains("identifier"),
        "{err}"
    );
    let auc: f64 = err
        .lines()
        .find_map(|l| l.strip_prefix("ROC AUC"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(auc > 0.7, "{err}");
    for needle in ["PR AUC", "Brier score", "reliability", "0.9–1.0"] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    let out = ok(
        d,
        &[
            "score",
            "--input",
            "h.csv",
            "--model",
            "model.toml",
            "--output",
            "s.ndjson",
        ],
    );
    assert!(
        stderr(&out).contains("scored 3000 records"),
        "{}",
        stderr(&out)
    );
    let scores = lines(&d.join("s.ndjson"));
    assert_eq!(scores.len(), 3000);
    assert_eq!(scores[0]["line"], 1);
    let p = scores[0]["score"]["probability"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p));
    assert_eq!(
        scores[0]["score"]["total"].as_f64().unwrap(),
        (p * 100.0).round()
    );
    assert!(
        scores[0]["score"]["reasons"][0]["code"]
            .as_str()
            .unwrap()
            .starts_with("model.")
    );
    // The report finds the segment the generator made convert off-profile.
    std::fs::write(
        d.join("leadgate.toml"),
        "[score.settings.icp]\nindustries = [\"Software\", \"Financial Services\"]\n",
    )
    .unwrap();
    let out = ok(
        d,
        &[
            "--config",
            "leadgate.toml",
            "report",
            "--input",
            "h.csv",
            "--outcome",
            "Converted",
            "--signals",
            "sig.ndjson",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("industry = education") && text.contains("above the ICP"),
        "{text}"
    );
    let signals = lines(&d.join("sig.ndjson"));
    assert!(
        signals
            .iter()
            .any(|s| s["signal"] == "scoring_calibration_signal")
    );
    assert!(
        signals
            .iter()
            .any(|s| s["signal"] == "icp_drift_signal" && s["value"] == "education")
    );
    // A missing outcome column is named.
    let out = leadgate(d)
        .args([
            "calibrate",
            "--input",
            "h.csv",
            "--outcome",
            "Won",
            "--output",
            "m2.toml",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--outcome Won") && stderr(&out).contains("Converted"),
        "{}",
        stderr(&out)
    );
}

/// `leadgate compose` plugs a capability into the component that imports
/// it, and refuses a plug that fills none of its imports, naming both.
#[test]
fn compose_plugs_by_interface_and_names_a_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let c = components();
    let out = dir.path().join("edge.wasm");
    let o = leadgate(dir.path())
        .arg("compose")
        .arg(c.join("edge.wasm"))
        .arg("--plug")
        .arg(c.join("validate.wasm"))
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("leadgate:plugin/validate@0.1.0"),
        "{}",
        stderr(&o)
    );
    assert!(
        !stderr(&o).contains("it imports: leadgate:plugin/validate"),
        "{}",
        stderr(&o)
    );
    assert!(std::fs::metadata(&out).unwrap().len() > 1_000_000);

    let o = leadgate(dir.path())
        .arg("compose")
        .arg(c.join("edge.wasm"))
        .arg("--plug")
        .arg(c.join("score.wasm"))
        .arg("--output")
        .arg(dir.path().join("wrong.wasm"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("score.wasm exports nothing")
            && stderr(&o).contains("leadgate:plugin/validate@0.1.0"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.path().join("wrong.wasm").exists());
}

/// A key turned on after leads were stored (here an identity column)
/// reaches them only through `leadgate rekey`.
#[test]
fn rekey_brings_stored_leads_under_a_changed_key() {
    if on_postgres() {
        eprintln!("SQLite only: it copies the store as a file");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = |identity: &str| {
        std::fs::write(
            d.join("leadgate.toml"),
            format!("[dedupe.settings]\nidentity_fields = {identity}\n"),
        )
        .unwrap();
    };
    let run = |db: &str, csv: &str| -> Vec<serde_json::Value> {
        std::fs::write(d.join("in.csv"), csv).unwrap();
        run_in(d, true, db)
    };
    // Stored while the customer number was not an identity column.
    config("[]");
    let stored = run(
        "s.db",
        "email,first_name,last_name,street,city,postcode,country,customer_no\n\
         william.smith@gmail.com,William,Smith,1 High Street,London,SW1A 1AA,GB,C-1001\n",
    );
    assert_eq!(stored[0]["status"], "accepted", "{}", stored[0]);
    std::fs::copy(d.join("s.db"), d.join("rekeyed.db")).unwrap();
    // The same customer, moved: nothing but the number and the name tie
    // them.
    config(r#"["customer_no"]"#);
    let moved = "email,first_name,last_name,street,city,postcode,country,customer_no\n\
                 bill.s@yahoo.com,Bill,Smith,12 Baker Street,Leeds,LS1 4AP,GB,C-1001\n";
    let missed = run("s.db", moved);
    assert_eq!(missed[0]["status"], "accepted", "{}", missed[0]);
    assert!(missed[0].get("match").is_none(), "{}", missed[0]);

    let out = ok(
        d,
        &["--config", "leadgate.toml", "--db", "rekeyed.db", "rekey"],
    );
    let said = stderr(&out);
    assert!(said.contains("rekeyed 1 lead of tenant default"), "{said}");
    // Found and compared now (everything else differs: a review item).
    let found = run("rekeyed.db", moved);
    assert_eq!(found[0]["status"], "review", "{}", found[0]);
    assert_eq!(found[0]["match"]["with"], stored[0]["lead_id"]);
}

#[test]
fn rekey_names_a_lead_it_cannot_key_and_changes_nothing() {
    if on_postgres() {
        eprintln!("SQLite only: it damages a row in the SQLite file by hand");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("in.csv"), PEOPLE).unwrap();
    let id = run_in(d, false, "s.db")[1]["lead_id"]
        .as_str()
        .unwrap()
        .to_string();
    // A stored record damaged by hand.
    let db = rusqlite::Connection::open(d.join("s.db")).unwrap();
    db.execute("UPDATE leads SET normalized = '{' WHERE id = ?1", [&id])
        .unwrap();
    let keys: i64 = db
        .query_row("SELECT count(*) FROM match_keys", [], |r| r.get(0))
        .unwrap();
    drop(db);
    let out = leadgate(d)
        .args(["--db", location("s.db").as_str(), "rekey"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = stderr(&out);
    assert!(
        said.contains(&format!(
            "lead {id}: its stored normalized record cannot be read"
        )) && said.contains("the key index was left as it was"),
        "{said}"
    );
    let db = rusqlite::Connection::open(d.join("s.db")).unwrap();
    let after: i64 = db
        .query_row("SELECT count(*) FROM match_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(after, keys);
}

#[test]
fn a_rescoring_pass_runs_once_at_a_time_across_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    scoring_store(d, SCORE_CONFIG);
    let db = location_in(d, "s.db");
    let rescore = || {
        leadgate(d)
            .args(["--config", "leadgate.toml", "--db"])
            .arg(location("s.db"))
            .args(["rescore"])
            .output()
            .unwrap()
    };
    // Another host is rescoring the tenant: this one does nothing, says
    // who, and succeeds (a scheduled pass on every host is not an error).
    let mut other = leadgate_store::Store::open(&db).unwrap();
    let claim = leadgate_store::service::Claim {
        holder: "host-b:77",
        lease_ms: 600_000,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert_eq!(
        other.take_pass("default", "rescore", claim, now).unwrap(),
        None
    );
    let out = rescore();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("another leadgate (host-b:77) is rescoring tenant default: nothing done"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("scored"), "{}", stderr(&out));
    // Re-enrichment is a pass of its own: not held.
    let out = leadgate(d)
        .args(["--config", "leadgate.toml", "--db"])
        .arg(location("s.db"))
        .args(["enrich", "--queued"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("another leadgate"),
        "{}",
        stderr(&out)
    );
    // Given up: the pass runs, and gives its own lease up when done.
    other
        .release_pass("default", "rescore", "host-b:77")
        .unwrap();
    let out = rescore();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("scored 4"), "{}", stderr(&out));
    let claim = leadgate_store::service::Claim {
        holder: "host-b:77",
        lease_ms: 600_000,
    };
    assert_eq!(
        other.take_pass("default", "rescore", claim, now).unwrap(),
        None,
        "the finished pass gave its lease up"
    );
}

const ROUTING_CONFIG: &str = r#"
[enrich]
enabled = false
[routing]
enabled = true
default_team = "na"
fallback = ["managers"]
[routing.teams.emea]
[routing.teams.na]
[routing.teams.managers]
[[routing.territories]]
name = "emea"
country = ["FR", "DE"]
team = "emea"
[routing.sla]
default_minutes = 30
minutes = {}
[[routing.reps]]
id = "ana"
teams = ["emea"]
crm_owner_id = "501"
[[routing.reps]]
id = "bo"
teams = ["emea"]
[[routing.reps]]
id = "cy"
teams = ["na"]
[[routing.reps]]
id = "max"
teams = ["managers"]
"#;

fn routed(dir: &Path, id: &str) -> serde_json::Value {
    show(dir, id)["assignment"]["current"].clone()
}

#[test]
fn leads_are_routed_with_reasons_and_a_missed_sla_reassigns() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("in.csv"),
        "email,first_name,last_name,company,country\n\
         ann@acme.fr,Ann,Roy,Acme,FR\n\
         bob@bolt.de,Bob,Kurz,Bolt,DE\n\
         cid@acme.fr,Cid,Roy,Acme,FR\n\
         dan@dune.com,Dan,Ode,Dune,US\n",
    )
    .unwrap();
    let db = location("s.db");
    let out = run_configured(d, ROUTING_CONFIG, &["--db", db.as_str()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (ann, bob, cid, dan) = (
        lead_id(d, "ann@acme.fr"),
        lead_id(d, "bob@bolt.de"),
        lead_id(d, "cid@acme.fr"),
        lead_id(d, "dan@dune.com"),
    );
    let cfg = ["--config", "leadgate.toml", "--db", db.as_str()];
    let with = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = cfg.iter().map(|s| s.to_string()).collect();
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };
    let run = |args: &[&str]| {
        let a = with(args);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        ok(d, &refs)
    };
    // The dry run of the first lead routed says what routing then does.
    let mut ids = [ann.clone(), bob.clone(), cid.clone(), dan.clone()];
    ids.sort();
    let first = ids[0].clone();
    let dry = run(&["route", "--dry-run", "--json", "--lead", &first]);
    let dry: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    let out = run(&["route", "--unassigned"]);
    assert!(
        stderr(&out).contains("routed 4 leads · 4 to reps"),
        "{}",
        stderr(&out)
    );
    let real = routed(d, &first);
    assert_eq!(
        real["rep"], dry["decision"]["rep"],
        "dry run {dry} vs {real}"
    );
    assert_eq!(real["explanation"], dry["decision"]);
    // Territory, round robin within emea, the account's owner for the
    // second acme.fr lead, the catch-all for the US lead.
    let (a, b, c, n) = (
        routed(d, &ann),
        routed(d, &bob),
        routed(d, &cid),
        routed(d, &dan),
    );
    assert_eq!(n["rep"], "cy");
    assert_eq!(n["step"], "default");
    assert_eq!(a["team"], "emea");
    assert_ne!(a["rep"], b["rep"], "turns within emea: {a} {b}");
    let (earlier, later) = if ann < cid { (&a, &c) } else { (&c, &a) };
    assert_eq!(later["step"], "account", "{later}");
    assert_eq!(later["rep"], earlier["rep"]);
    assert!(
        later["explanation"]["rule"]
            .as_str()
            .unwrap()
            .contains("acme.fr"),
        "{later}"
    );
    assert_eq!(a["state"], "open");
    assert!(a["sla_due_at"].as_i64().unwrap() > a["assigned_at"].as_i64().unwrap());
    // Routed once: a second pass finds nothing.
    let out = run(&["route", "--unassigned"]);
    assert!(stderr(&out).contains("routed 0 leads"), "{}", stderr(&out));

    // Ann's rep answers in time; Bob's rep does not.
    let out = run(&["touch", &ann]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("within the SLA"));
    let later_time = leadgate_routing::format_time(common::core::now_ms() + 31 * 60_000);
    let out = run(&["tick", "--no-handoff", "--at", &later_time]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    // Bob and the second acme.fr lead (if its rep was not Ann's) missed it;
    // Dan's rep too. Ann's was touched.
    assert!(text.contains("reassigned"), "{text}");
    assert_eq!(routed(d, &ann)["state"], "touched");
    let b2 = routed(d, &bob);
    assert_ne!(
        b2["rep"], b["rep"],
        "reassigned away from who missed it: {b2}"
    );
    assert_eq!(b2["step"], "territory");
    assert_eq!(b2["assigned_by"], "sla");
    let history = show(d, &bob)["assignment"]["history"].clone();
    assert_eq!(history[0]["state"], "breached");
    let alerts = String::from_utf8_lossy(&run(&["alerts"]).stdout).to_string();
    assert!(
        alerts.contains("routing.sla_breach") && alerts.contains(&bob),
        "{alerts}"
    );
    // Dan's only other option is the managers' team.
    assert_eq!(routed(d, &dan)["rep"], "max");

    // No one available: the lead waits in the queue, alerted, never dropped.
    for rep in ["ana", "bo", "cy", "max"] {
        run(&["reps", "away", rep]);
    }
    let out = run(&["route", "--lead", &dan]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("held in \"unassigned\""));
    let q = routed(d, &dan);
    assert_eq!(
        (q["state"].as_str(), q["rep"].is_null()),
        (Some("queued"), true)
    );
    let alerts = String::from_utf8_lossy(&run(&["alerts"]).stdout).to_string();
    assert!(alerts.contains("routing.queued"), "{alerts}");
    // Back: the queue's timer routes it at the next tick after its retry.
    run(&["reps", "back", "cy"]);
    let retry = leadgate_routing::format_time(common::core::now_ms() + 6 * 60_000);
    let out = run(&["tick", "--no-handoff", "--at", &retry]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 routed"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(routed(d, &dan)["rep"], "cy");

    // The stats add up.
    let stats = run(&["reps", "stats", "--json"]);
    let total: i64 = String::from_utf8_lossy(&stats.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["assigned_total"]
                .as_i64()
                .unwrap()
        })
        .sum();
    let assignments = show(d, &ann)["assignment"]["history"]
        .as_array()
        .unwrap()
        .len()
        + show(d, &bob)["assignment"]["history"]
            .as_array()
            .unwrap()
            .len()
        + show(d, &cid)["assignment"]["history"]
            .as_array()
            .unwrap()
            .len()
        + show(d, &dan)["assignment"]["history"]
            .as_array()
            .unwrap()
            .len();
    // Every assignment but the queued one counted for a rep.
    assert_eq!(total as usize, assignments - 1);
}

#[test]
fn routing_mistakes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("leadgate.toml"), ROUTING_CONFIG).unwrap();
    let db = location("s.db");
    let refuse = |args: &[&str], needle: &str| {
        let out = leadgate(d)
            .args(["--config", "leadgate.toml", "--db", db.as_str()])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    };
    refuse(
        &["reps", "set", "zed", "--team", "nowhere"],
        "teams: \"nowhere\" is not a team",
    );
    refuse(&["reps", "set", "zed"], "--team");
    refuse(
        &["reps", "set", "ana", "--timezone", "Mars/Base"],
        "timezone",
    );
    refuse(&["reps", "set", "ana", "--hours", "always"], "hours");
    refuse(&["reps", "away", "nobody"], "no rep \"nobody\"");
    refuse(&["reps", "away", "ana", "--until", "tomorrow"], "--until");
    refuse(&["route", "--lead", "no-such-lead"], "no lead no-such-lead");
    refuse(
        &["route", "--dry-run", "--fields", "{\"country\": 5}"],
        "--fields",
    );
    // A bad table is refused when the configuration loads, naming the key.
    std::fs::write(
        d.join("bad.toml"),
        ROUTING_CONFIG.replace("team = \"emea\"", "team = \"emeaa\""),
    )
    .unwrap();
    let out = leadgate(d)
        .args(["--config", "bad.toml", "--db", db.as_str(), "reps", "list"])
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("routing.territories[0].team"),
        "{}",
        stderr(&out)
    );
    // Routing off: the verbs say so.
    std::fs::write(d.join("off.toml"), "").unwrap();
    let out = leadgate(d)
        .args([
            "--config",
            "off.toml",
            "--db",
            db.as_str(),
            "route",
            "--dry-run",
            "--fields",
            "{}",
        ])
        .output()
        .unwrap();
    assert!(stderr(&out).contains("routing is off"), "{}", stderr(&out));
}

#[test]
fn alerts_are_sent_silenced_listed_and_retried_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("in.csv"),
        "email,first_name,last_name,company,country\n\
         ann@acme.fr,Ann,Roy,Acme,FR\n\
         dan@dune.com,Dan,Ode,Dune,US\n",
    )
    .unwrap();
    // A webhook no one answers, tried once: the message is dead-lettered.
    let config = format!(
        r#"{ROUTING_CONFIG}
[alerts.destinations.ops]
kind = "webhook"
url = "http://127.0.0.1:1/hook"
max_attempts = 1
[[alerts.routes]]
match = {{ kind = "routing.*" }}
to = ["ops"]
group_wait_seconds = 0
"#
    );
    let db = location("s.db");
    let out = run_configured(d, &config, &["--db", db.as_str()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cfg = ["--config", "leadgate.toml", "--db", db.as_str()];
    let run = |args: &[&str]| {
        let mut a: Vec<&str> = cfg.to_vec();
        a.extend_from_slice(args);
        leadgate(d).args(&a).output().unwrap()
    };
    let stdout = |o: &Output| String::from_utf8_lossy(&o.stdout).to_string();
    for rep in ["ana", "bo", "cy", "max"] {
        assert!(run(&["reps", "away", rep]).status.success());
    }
    let out = run(&["route", "--unassigned"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // One pass: two alerts filed into one group, one message, dead.
    let out = run(&["alerts", "send"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("alerts: 2 routed")
            && stdout(&out).contains("1 queued")
            && stdout(&out).contains("1 dead"),
        "{}",
        stdout(&out)
    );
    let out = run(&["alerts", "--json"]);
    let states: Vec<String> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["state"].to_string())
        .collect();
    assert_eq!(states, ["\"routed\"", "\"routed\""]);
    let out = run(&["alerts", "notifications", "--state", "dead"]);
    assert!(
        stdout(&out).contains("dead") && stdout(&out).contains("connection"),
        "{}",
        stdout(&out)
    );
    let out = run(&["alerts", "retry"]);
    assert!(stdout(&out).contains("1 notification(s) queued again"));
    let out = run(&["alerts", "notifications", "--state", "pending", "--json"]);
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));
    assert!(
        !run(&["alerts", "notifications", "--state", "lost"])
            .status
            .success()
    );
    // Silences: added, listed, refused with the field, ended.
    let out = run(&[
        "alerts",
        "silence",
        "--match",
        "kind=routing.*",
        "--for",
        "2h",
        "--comment",
        "territory change",
        "--by",
        "ana",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("silence #1 active until"),
        "{}",
        stdout(&out)
    );
    let out = run(&["alerts", "silences"]);
    assert!(stdout(&out).contains("kind=routing.*") && stdout(&out).contains("territory change"));
    let out = run(&[
        "alerts",
        "silence",
        "--match",
        "kind=*",
        "--for",
        "1h",
        "--comment",
        "x",
        "--by",
        "y",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("matchers"), "{}", stderr(&out));
    let out = run(&[
        "alerts",
        "silence",
        "--match",
        "kind",
        "--for",
        "1h",
        "--comment",
        "x",
        "--by",
        "y",
    ]);
    assert!(stderr(&out).contains("label=value"), "{}", stderr(&out));
    // While silenced, the queued leads' alerts, raised again when their
    // timer routes them again, are not sent.
    let retry = leadgate_routing::format_time(common::core::now_ms() + 6 * 60_000);
    let out = run(&["tick", "--no-handoff", "--at", &retry]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("alerts: 0 routed · 0 unrouted · 2 silenced"),
        "{}",
        stdout(&out)
    );
    assert!(run(&["alerts", "unsilence", "1"]).status.success());
    let out = run(&["alerts", "unsilence", "1"]);
    assert!(stderr(&out).contains("silence 1"), "{}", stderr(&out));
    assert!(stdout(&run(&["alerts", "silences"])).contains("no silences"));
    assert!(stdout(&run(&["alerts", "silences", "--all"])).contains("expired"));
}

#[test]
fn rules_documents_are_checked_naming_file_line_rule_and_field() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    // The demo tenant's rules, named by its config.
    let o = leadgate(dir.path())
        .arg("--config")
        .arg(root.join("samples/leadgate.toml"))
        .args(["rules", "check"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    for id in [
        "pricing-revisit",
        "new-form-lead",
        "hot-lead",
        "opportunity-inactive",
    ] {
        assert!(out.contains(id), "{out}");
    }
    assert!(out.contains("4 rules in 1 documents: no mistakes"), "{out}");
    // A document with mistakes: each named, the status 1.
    std::fs::write(
        dir.path().join("bad.toml"),
        "[[rule]]\nid = \"revisit\"\ntrigger = { on = \"event\", events = [\"page_view\"], count = 3, within = \"2\" }\nwhen = 'score.total >= \"80\"'\nactions = [{ type = \"alert\", message = \"x\" }]\n",
    )
    .unwrap();
    let o = leadgate(dir.path())
        .args(["rules", "check", "bad.toml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("bad.toml:3: rule \"revisit\": trigger.within: \"2\" has no unit"),
        "{err}"
    );
    assert!(
        err.contains("bad.toml:4: rule \"revisit\": when: "),
        "{err}"
    );
    assert!(err.contains("2 mistakes in 1 documents"), "{err}");
    // As JSON, for tools.
    let o = leadgate(dir.path())
        .args(["rules", "check", "--json", "bad.toml"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["refusals"].as_array().unwrap().len(), 2, "{doc}");
    // No documents at all is a mistake of its own.
    let o = leadgate(dir.path())
        .args(["rules", "check"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("[rules] files"), "{}", stderr(&o));
}

#[test]
fn rules_test_runs_the_demo_rules_over_files_on_an_injected_clock() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let h = 3_600_000i64;
    let t0 = 1_780_000_000_000i64;
    let snapshot = |id: &str, at: i64, email: &str, source: &str, extra: &str| {
        format!(
            r#"{{"id": "{id}", "at": {at}, "lead": {{"email": "{email}", "source": "{source}"}}{extra}}}"#
        )
    };
    let leads = [
        snapshot("ann", t0, "ann@acme.io", "form", ""),
        snapshot(
            "bob",
            t0,
            "bob@globex.io",
            "import",
            r#", "score": {"total": 40}, "qualification": "qualified""#,
        ),
        // Bob's score crosses 80; later Bob becomes an opportunity.
        snapshot(
            "bob",
            t0 + 2 * h,
            "bob@globex.io",
            "import",
            r#", "score": {"total": 85, "grade": "A"}, "qualification": "qualified""#,
        ),
        snapshot(
            "bob",
            t0 + 3 * h,
            "bob@globex.io",
            "import",
            r#", "score": {"total": 85, "grade": "A"}, "qualification": "qualified", "stage": "opportunity""#,
        ),
    ];
    std::fs::write(dir.path().join("leads.ndjson"), leads.join("\n")).unwrap();
    let view = |id: &str, at: i64, email: &str, url: &str| {
        format!(
            r#"{{"id": "{id}", "type": "page_view", "at": {at}, "email": "{email}", "url": "{url}"}}"#
        )
    };
    let events = [
        view("v1", t0 + h, "ann@acme.io", "https://acme.io/pricing"),
        view("v2", t0 + 47 * h, "ann@acme.io", "https://acme.io/pricing"),
        // Delivered twice.
        view("v2", t0 + 47 * h, "ann@acme.io", "https://acme.io/pricing"),
        view("v3", t0 + 5 * h, "bob@globex.io", "https://globex.io/blog"),
        view(
            "v9",
            t0 + 5 * h,
            "nobody@nowhere.io",
            "https://x.io/pricing",
        ),
    ];
    std::fs::write(dir.path().join("events.ndjson"), events.join("\n")).unwrap();
    let o = leadgate(dir.path())
        .args(["rules", "test", "--rules"])
        .arg(root.join("samples/rules.toml"))
        .args([
            "--leads",
            "leads.ndjson",
            "--events",
            "events.ndjson",
            "--until",
            "2026-07-20T00:00:00Z",
            "--output",
            "actions.ndjson",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let fired: Vec<(String, String, i64)> = lines(&dir.path().join("actions.ndjson"))
        .iter()
        .map(|x| {
            (
                x["rule"].as_str().unwrap().to_string(),
                x["lead_id"].as_str().unwrap().to_string(),
                x["at"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        fired,
        [
            ("new-form-lead".to_string(), "ann".to_string(), t0),
            ("hot-lead".into(), "bob".into(), t0 + 2 * h),
            ("pricing-revisit".into(), "ann".into(), t0 + 47 * h),
            // 30 days after Bob's last activity as an opportunity.
            (
                "opportunity-inactive".into(),
                "bob".into(),
                t0 + 5 * h + 30 * 24 * h
            ),
        ]
    );
    let err = stderr(&o);
    assert!(
        err.contains("4 rule executions; 1 events for no lead"),
        "{err}"
    );
    let x = lines(&dir.path().join("actions.ndjson"));
    assert_eq!(
        x[2]["key"],
        format!("pricing-revisit:ann:window:{}", t0 + h)
    );
    assert_eq!(x[2]["actions"][1]["type"], "score");
}

#[test]
fn rules_fire_on_stored_events_once_and_carry_out_their_actions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("rules.toml"),
        r#"[[rule]]
id = "pricing-revisit"
trigger = { on = "event", events = ["page_view"], categories = ["pricing"], count = 2, within = "48h" }
enrol = { policy = "cooldown", period = "7d" }
actions = [
  { type = "alert", message = "visited the pricing page twice within 48 h" },
  { type = "score", points = 20, reason = "pricing page revisited within 48 h" },
  { type = "crm_update", fields = { leadgate_hot = "true" } },
]

[[rule]]
id = "opportunity-review"
trigger = { on = "stage_changed", to = ["opportunity"] }
actions = [{ type = "review", reason = "a new opportunity: check its owner" }]

[[rule]]
id = "any-view"
mode = "shadow"
trigger = { on = "event", events = ["page_view"], lateness = "7d" }
enrol = { policy = "every" }
actions = [{ type = "alert", message = "a page view" }]
"#,
    )
    .unwrap();
    let config = format!("{SCORE_CONFIG}[rules]\nfiles = [\"rules.toml\"]\n");
    scoring_store(d, &config);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let h = 3_600_000i64;
    let view = |id: &str, at: i64, email: &str| {
        format!(
            "{{\"id\": \"{id}\", \"type\": \"page_view\", \"at\": {at}, \"email\": \"{email}\", \"url\": \"https://x.io/pricing\"}}\n"
        )
    };
    // Ann: twice within 48 h (47 h apart); Bob: 49 h apart, never.
    let mut events = view("a1", now - 48 * h, "ann@acme-robotics.com");
    events.push_str(&view("a2", now - h, "ann@acme-robotics.com"));
    events.push_str(&view("b1", now - 60 * h, "bob@acme-robotics.com"));
    events.push_str(&view("b2", now - 11 * h, "bob@acme-robotics.com"));
    events.push_str(&format!(
        "{{\"id\": \"s1\", \"type\": \"stage_change\", \"stage\": \"Opportunity\", \"at\": {}, \"email\": \"cyd@acme-robotics.com\"}}\n",
        now - 2 * h
    ));
    events.push_str(
        "{\"id\": \"s2\", \"type\": \"stage_change\", \"stage\": \"not a stage!\", \"at\": 1, \"email\": \"cyd@acme-robotics.com\"}\n",
    );
    std::fs::write(d.join("events.ndjson"), &events).unwrap();
    let load = || {
        ok(
            d,
            &[
                "--config",
                "leadgate.toml",
                "--db",
                location("s.db").as_str(),
                "events",
                "--input",
                "events.ndjson",
            ],
        )
    };
    let out = load();
    let err = stderr(&out);
    assert!(err.contains("event.stage 1"), "{err}");
    assert!(err.contains("rules: "), "{err}");
    assert!(err.contains("1 waiting for the service"), "{err}");
    let ann = lead_id(d, "ann@acme-robotics.com");
    let shown = show(d, &ann);
    let fired = shown["rules"]["fired"].as_array().unwrap();
    let of = |rule: &str| -> Vec<&serde_json::Value> {
        fired.iter().filter(|f| f["rule"] == rule).collect()
    };
    assert_eq!(of("pricing-revisit").len(), 1, "{shown}");
    let run = of("pricing-revisit")[0];
    assert_eq!(
        run["key"],
        format!("pricing-revisit:{ann}:window:{}", now - 48 * h)
    );
    assert_eq!(run["trigger"], "event");
    let states: Vec<(&str, &str)> = run["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["type"].as_str().unwrap(), a["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [
            ("alert", "done"),
            ("score", "done"),
            ("crm_update", "pending")
        ],
        "{run}"
    );
    // The score moved by the rule's points, shown among its reasons.
    let reasons = shown["score"]["current"]["reasons"].to_string();
    assert!(reasons.contains("rule.pricing-revisit"), "{shown}");
    assert!(
        reasons.contains("pricing page revisited within 48 h"),
        "{shown}"
    );
    // Shadow mode: recorded, nothing carried out.
    assert_eq!(of("any-view").len(), 2, "{shown}");
    assert!(
        of("any-view")
            .iter()
            .all(|f| f["mode"] == "shadow" && f["actions"][0]["state"] == "shadow"),
        "{shown}"
    );
    // Bob: never.
    let bob = show(d, &lead_id(d, "bob@acme-robotics.com"));
    assert!(
        bob["rules"]["fired"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["rule"] != "pricing-revisit"),
        "{bob}"
    );
    // Cyd: an opportunity from the stage event, and a review item.
    let cyd_id = lead_id(d, "cyd@acme-robotics.com");
    let cyd = show(d, &cyd_id);
    assert_eq!(cyd["rules"]["stage"]["stage"], "opportunity", "{cyd}");
    let review = &cyd["rules"]["fired"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "opportunity-review")
        .unwrap()["actions"][0];
    assert_eq!(review["state"], "done", "{cyd}");
    // The rep's alert is in the alerts.
    let alerts = ok(d, &["--db", location("s.db").as_str(), "alerts"]);
    assert!(
        String::from_utf8_lossy(&alerts.stdout).contains("rule.pricing-revisit"),
        "{}",
        String::from_utf8_lossy(&alerts.stdout)
    );
    // The same events again: nothing fires twice.
    let before = show(d, &ann)["score"]["current"]["total"].clone();
    let err = stderr(&load());
    assert!(err.contains("5 duplicates ignored"), "{err}");
    let again = show(d, &ann);
    assert_eq!(
        again["rules"]["fired"].as_array().unwrap().len(),
        fired.len()
    );
    assert_eq!(again["score"]["current"]["total"], before, "{again}");

    // `rules test` on the same events decides alike.
    let snapshot = |id: &str, email: &str| {
        format!(
            "{{\"id\": \"{id}\", \"at\": {}, \"lead\": {{\"email\": \"{email}\", \"source\": \"import\"}}}}\n",
            now - 100 * h
        )
    };
    let mut leads = snapshot(&ann, "ann@acme-robotics.com");
    leads.push_str(&snapshot(
        &lead_id(d, "bob@acme-robotics.com"),
        "bob@acme-robotics.com",
    ));
    std::fs::write(d.join("leads.ndjson"), leads).unwrap();
    let views: String = events
        .lines()
        .filter(|l| l.contains("page_view"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(d.join("views.ndjson"), views).unwrap();
    ok(
        d,
        &[
            "--config",
            "leadgate.toml",
            "rules",
            "test",
            "--leads",
            "leads.ndjson",
            "--events",
            "views.ndjson",
            "--output",
            "actions.ndjson",
        ],
    );
    let tested: Vec<String> = lines(&d.join("actions.ndjson"))
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_string())
        .collect();
    let mut stored: Vec<String> = [ann.clone(), lead_id(d, "bob@acme-robotics.com")]
        .iter()
        .flat_map(|id| {
            show(d, id)["rules"]["fired"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["key"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut tested_sorted = tested.clone();
    tested_sorted.sort();
    stored.sort();
    assert_eq!(tested_sorted, stored);

    // A backtest over the store's last week finds the same pricing run,
    // and writes nothing.
    let week_ago = leadgate_routing::format_time(now - 7 * 24 * h);
    let out = ok(
        d,
        &[
            "--config",
            "leadgate.toml",
            "--db",
            location("s.db").as_str(),
            "rules",
            "backtest",
            "--from",
            week_ago.as_str(),
            "--output",
            "backtest.ndjson",
        ],
    );
    let err = stderr(&out);
    assert!(
        err.contains("pricing-revisit: 1 executions, 1 leads would have entered"),
        "{err}"
    );
    let runs = lines(&d.join("backtest.ndjson"));
    let pricing: Vec<&serde_json::Value> = runs
        .iter()
        .filter(|r| r["rule"] == "pricing-revisit")
        .collect();
    assert_eq!(pricing.len(), 1, "{runs:?}");
    assert_eq!(pricing[0]["lead_id"], ann.as_str());
    assert!(
        runs.iter()
            .any(|r| r["rule"] == "opportunity-review" && r["lead_id"] == cyd_id.as_str()),
        "{runs:?}"
    );
    assert_eq!(
        show(d, &ann)["rules"]["fired"].as_array().unwrap().len(),
        fired.len()
    );
}
