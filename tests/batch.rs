//! `smoe batch` end to end on the tiny Mixtral: same answers as `smoe run` whatever --parallel is,
//! resume after SIGKILL, torn-line repair, error records, shards, --out-dir.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

#[path = "common/tiny.rs"]
mod tiny;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tiny::{smoe, tiny_gguf};

fn model() -> String {
    tiny_gguf("q8_0").to_str().unwrap().to_string()
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// id (as JSON text) → record; panics on a duplicate id.
fn by_id(recs: &[Value]) -> BTreeMap<String, Value> {
    let mut m = BTreeMap::new();
    for r in recs {
        assert!(
            m.insert(r["id"].to_string(), r.clone()).is_none(),
            "duplicate {}",
            r["id"]
        );
    }
    m
}

const PROMPTS: [&str; 6] = [
    "Once upon a time, there was",
    "The capital of France is",
    "ROMEO:",
    "In the beginning the Universe was created. This has made a lot of people very angry and been widely regarded as a bad move.",
    "1, 2, 3, 4,",
    "Hello",
];

fn write_jsonl(dir: &Path, name: &str, lines: &[Value]) -> PathBuf {
    let p = dir.join(name);
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&p, text).unwrap();
    p
}

fn batch(input: &Path, out: &Path, extra: &[&str]) -> Output {
    let m = model();
    let mut args = vec![
        "batch",
        "-m",
        &m,
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = smoe(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

fn run_text(prompt: &str, extra: &[&str]) -> String {
    let m = model();
    let mut args = vec!["run", "-m", &m, "-p", prompt, "--json"];
    args.extend_from_slice(extra);
    let o = smoe(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["text"].as_str().unwrap().to_string()
}

#[test]
fn parallel_does_not_change_answers_and_they_equal_smoe_run() {
    let dir = tempfile::tempdir().unwrap();
    // Different lengths (max_tokens) so slots free at different steps and new prompts are read
    // next to running decodes; -b 5 splits prompts into several chunks.
    let mut lines: Vec<Value> = PROMPTS
        .iter()
        .enumerate()
        .map(|(i, p)| json!({"id": format!("p{i}"), "prompt": p, "max_tokens": 6 + 3 * i}))
        .collect();
    lines.push(json!({"id": "chat", "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 8}));
    let input = write_jsonl(dir.path(), "in.jsonl", &lines);
    for sampling in [&["--temp", "0"][..], &["--temp", "1.0", "--seed", "7"][..]] {
        let mut outs = Vec::new();
        for par in ["1", "3", "8"] {
            let out = dir
                .path()
                .join(format!("out-{par}-{}.jsonl", sampling.len()));
            let mut extra = vec!["--parallel", par, "-b", "5"];
            extra.extend_from_slice(sampling);
            batch(&input, &out, &extra);
            outs.push(by_id(&records(&out)));
        }
        assert_eq!(outs[0].len(), lines.len());
        for o in &outs[1..] {
            for (id, r) in &outs[0] {
                assert_eq!(o[id]["text"], r["text"], "{id} {sampling:?}");
                assert_eq!(o[id]["completion_tokens"], r["completion_tokens"], "{id}");
            }
        }
        for (i, p) in PROMPTS.iter().enumerate().step_by(2) {
            let n = (6 + 3 * i).to_string();
            let mut extra = vec!["-n", &n];
            extra.extend_from_slice(sampling);
            let want = run_text(p, &extra);
            assert_eq!(
                outs[0][&format!("\"p{i}\"")]["text"],
                want.as_str(),
                "p{i} {sampling:?}"
            );
        }
        let mut extra = vec!["-n", "8", "--chat"];
        extra.extend_from_slice(sampling);
        assert_eq!(
            outs[0]["\"chat\""]["text"],
            run_text("Hello there", &extra).as_str()
        );
        assert!(outs[0]["\"p0\""]["prompt_tokens"].as_u64().unwrap() > 0);
    }
}

#[test]
fn stop_strings_cut_the_text() {
    let dir = tempfile::tempdir().unwrap();
    let full_out = dir.path().join("full.jsonl");
    let input = write_jsonl(
        dir.path(),
        "a.jsonl",
        &[json!({"id": 1, "prompt": PROMPTS[0]})],
    );
    batch(&input, &full_out, &["--temp", "0", "-n", "16"]);
    let full = records(&full_out)[0]["text"].as_str().unwrap().to_string();
    // Stop at the third word of the greedy completion.
    let words: Vec<&str> = full.split_whitespace().collect();
    assert!(words.len() > 3, "{full}");
    let stop = format!(" {}", words[2]);
    let cut = full.find(&stop).unwrap();
    let input = write_jsonl(
        dir.path(),
        "b.jsonl",
        &[json!({"id": 1, "prompt": PROMPTS[0], "stop": ["zzzz", stop]})],
    );
    let out = dir.path().join("stop.jsonl");
    batch(&input, &out, &["--temp", "0", "-n", "16"]);
    let r = &records(&out)[0];
    assert_eq!(r["text"], &full[..cut]);
    assert_eq!(r["finish_reason"], "stop");
}

fn many_requests(dir: &Path, n: usize) -> PathBuf {
    let lines: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("r{i}"), "prompt": format!("{} {i}", PROMPTS[i % PROMPTS.len()])}))
        .collect();
    write_jsonl(dir, "many.jsonl", &lines)
}

#[test]
fn resumes_after_sigkill_without_losing_or_repeating_anything() {
    let dir = tempfile::tempdir().unwrap();
    let n = 120;
    let input = many_requests(dir.path(), n);
    let args = ["--temp", "0", "-n", "24", "--parallel", "4", "-t", "1"];
    let reference = dir.path().join("ref.jsonl");
    batch(&input, &reference, &args);
    let reference = by_id(&records(&reference));

    let out = dir.path().join("out.jsonl");
    let m = model();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_smoe"));
    cmd.args([
        "batch",
        "-m",
        &m,
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ])
    .args(args);
    let mut child = cmd.stderr(std::process::Stdio::null()).spawn().unwrap();
    let t0 = Instant::now();
    let mut seen = 0;
    while t0.elapsed() < Duration::from_secs(60) {
        seen = std::fs::read(&out)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count())
            .unwrap_or(0);
        if seen >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial = std::fs::read_to_string(&out).unwrap();
    let done_before = partial.lines().count();
    assert!(
        seen >= 3 && done_before < n,
        "kill should land mid-run: {done_before} of {n} done"
    );

    let o = batch(&input, &out, &args);
    assert!(String::from_utf8_lossy(&o.stderr).contains("skipped"));
    let after = by_id(&records(&out)); // panics on a duplicate
    assert_eq!(after.len(), n);
    for (id, r) in &reference {
        assert_eq!(after[id]["text"], r["text"], "{id}");
    }
    // Records finished before the kill are kept as they were.
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .starts_with(partial.trim_end_matches(|c| c != '\n')));
}

#[test]
fn a_torn_last_line_is_cut_and_redone() {
    let dir = tempfile::tempdir().unwrap();
    let input = many_requests(dir.path(), 5);
    let args = ["--temp", "0", "-n", "8"];
    let out = dir.path().join("out.jsonl");
    batch(&input, &out, &args);
    let full = std::fs::read_to_string(&out).unwrap();
    let want = by_id(&records(&out));
    let lines: Vec<&str> = full.lines().collect();
    for torn in [
        lines[4][..lines[4].len() / 2].to_string(), // no newline
        format!("{}\n", &lines[4][..lines[4].len() / 2]), // not JSON
    ] {
        std::fs::write(&out, format!("{}\n{torn}", lines[..4].join("\n"))).unwrap();
        let o = batch(&input, &out, &args);
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("torn"),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let got = by_id(&records(&out));
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>()
        );
        for (id, r) in &want {
            assert_eq!(got[id]["text"], r["text"]);
        }
    }
}

#[test]
fn bad_requests_become_error_records_and_the_exit_code_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("in.jsonl");
    let long = "word ".repeat(100);
    let text = [
        r#"{"id": "ok1", "prompt": "Hello"}"#.to_string(),
        r#"{"id": "broken", "prompt": "#.to_string(),
        r#"{"id": "noprompt"}"#.to_string(),
        r#"{"id": "badtype", "prompt": "Hi", "max_tokens": "ten"}"#.to_string(),
        json!({"id": "long", "prompt": long}).to_string(),
        r#"{"id": "ok1", "prompt": "again"}"#.to_string(),
        r#"{"id": "ok2", "prompt": "World", "temperature": 0.5, "seed": 3}"#.to_string(),
    ]
    .join("\n");
    std::fs::write(&p, text).unwrap();
    let out = dir.path().join("out.jsonl");
    let m = model();
    let o = smoe(&[
        "batch",
        "-m",
        &m,
        p.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "-n",
        "4",
        "--ctx",
        "64",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("5 of 7 requests failed") && !err.contains("panicked"),
        "{err}"
    );
    let recs = records(&out);
    assert_eq!(recs.len(), 7);
    let errors: Vec<&Value> = recs
        .iter()
        .filter(|r| r["finish_reason"] == "error")
        .collect();
    let msg = |needle: &str| {
        errors
            .iter()
            .find(|r| r["error"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("{needle}: {recs:?}"))
    };
    assert!(msg("invalid JSON")["error"]
        .as_str()
        .unwrap()
        .contains("in.jsonl:2"));
    assert_eq!(msg("no prompt")["id"], "noprompt");
    assert!(msg("\"max_tokens\" must be")["error"]
        .as_str()
        .unwrap()
        .contains(":4"));
    assert_eq!(msg("context of 64")["id"], "long");
    assert!(msg("duplicate id")["error"]
        .as_str()
        .unwrap()
        .contains(":6"));
    let ok: HashSet<&str> = recs
        .iter()
        .filter(|r| r["finish_reason"] != "error")
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ok, HashSet::from(["ok1", "ok2"]));
    // A re-run finds everything done (errors included) and redoes nothing.
    let o = smoe(&[
        "batch",
        "-m",
        &m,
        p.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "-n",
        "4",
        "--ctx",
        "64",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(records(&out).len(), 7);
}

#[test]
fn shards_partition_the_requests() {
    let dir = tempfile::tempdir().unwrap();
    let input = many_requests(dir.path(), 11);
    let mut all = Vec::new();
    for i in 0..3 {
        let out = dir.path().join(format!("shard{i}.jsonl"));
        batch(
            &input,
            &out,
            &["--temp", "0", "-n", "1", "--shard", &format!("{i}/3")],
        );
        let ids: Vec<String> = records(&out)
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        assert!(!ids.is_empty());
        all.extend(ids);
    }
    all.sort();
    let mut want: Vec<String> = (0..11).map(|i| format!("r{i}")).collect();
    want.sort();
    assert_eq!(all, want, "every id exactly once across the shards");
    let o = smoe(&[
        "batch",
        "-m",
        &model(),
        input.to_str().unwrap(),
        "-o",
        "x.jsonl",
        "--shard",
        "3/3",
    ]);
    assert!(!o.status.success());
}

#[test]
fn out_dir_writes_one_file_per_input_file() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("prompts");
    std::fs::create_dir(&inputs).unwrap();
    for (i, p) in PROMPTS.iter().take(3).enumerate() {
        std::fs::write(inputs.join(format!("q{i}.txt")), format!("{p}\n")).unwrap();
    }
    std::fs::write(inputs.join("notes.md"), "not a prompt").unwrap();
    let outdir = dir.path().join("answers");
    let m = model();
    let args = [
        "batch",
        "-m",
        &m,
        inputs.to_str().unwrap(),
        "--out-dir",
        outdir.to_str().unwrap(),
        "--temp",
        "0",
        "-n",
        "6",
        "--parallel",
        "2",
    ];
    let o = smoe(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut names: Vec<String> = std::fs::read_dir(&outdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["q0.txt", "q1.txt", "q2.txt"]);
    for (i, p) in PROMPTS.iter().take(3).enumerate() {
        let got = std::fs::read_to_string(outdir.join(format!("q{i}.txt"))).unwrap();
        assert_eq!(got, run_text(p, &["--temp", "0", "-n", "6"]));
    }
    // Done files are skipped on a re-run; a missing one is redone.
    std::fs::remove_file(outdir.join("q1.txt")).unwrap();
    let o = smoe(&args);
    assert!(String::from_utf8_lossy(&o.stderr).contains("2 requests already done"));
    assert!(outdir.join("q1.txt").exists());

    // One prompt a line: ids are line numbers.
    let lines = dir.path().join("prompts.lines");
    std::fs::write(&lines, format!("{}\n\n{}\n", PROMPTS[0], PROMPTS[1])).unwrap();
    let out = dir.path().join("lines.jsonl");
    batch(&lines, &out, &["--temp", "0", "-n", "6"]);
    let recs = by_id(&records(&out));
    assert_eq!(recs.keys().cloned().collect::<Vec<_>>(), ["1", "3"]);
    assert_eq!(
        recs["3"]["text"],
        run_text(PROMPTS[1], &["--temp", "0", "-n", "6"]).as_str()
    );
}
