//! Integration tests: the real `leadgate` binary on real files, with the real
//! components built by `cargo xtask build`.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn components() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/components");
    assert!(
        dir.join("validate.wasm").exists() && dir.join("fixtures/chaos.wasm").exists(),
        "components are not built: run `cargo xtask build` (or `cargo xtask test`)"
    );
    dir
}

fn leadgate(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_leadgate"));
    c.current_dir(dir)
        .env("LEADGATE_COMPONENTS", components())
        .env_remove("LEADGATE_CONFIG")
        .env_remove("LEADGATE_DB");
    c
}

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
        "tenant = \"t\"\n[limits]\ndeadline_ms = 200\nmemory_mib = 32\nbatch_size = 8\n[validate]\ncomponent = {:?}\n",
        chaos.display().to_string()
    );
    let out = run_configured(dir.path(), &config, &["--db", "s.db"]);
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
        .args(["--db", "s.db", "exceptions", "--json"])
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
            "sample", "--count", "2000", "--seed", "7", "--output", "s.csv", "--truth", "t.csv",
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (made, name) in [
        ("s.csv", "samples/leads.csv"),
        ("t.csv", "samples/leads.truth.csv"),
    ] {
        let made = std::fs::read(dir.path().join(made)).unwrap();
        let shipped = std::fs::read(root.join(name)).unwrap();
        assert!(
            made == shipped,
            "{name} is stale: regenerate it with `leadgate sample --count 2000 --seed 7`"
        );
    }
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
            "s.db",
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
    let store = leadgate_store::Store::open(dir.path().join("s.db").to_str().unwrap()).unwrap();
    let (status, totals) = store.run_status(1).unwrap().unwrap();
    assert_eq!(status, "failed");
    assert!(totals.total > 0);
    assert_eq!(
        store.count("leads").unwrap(),
        totals.total,
        "every processed lead is in the store"
    );
}
