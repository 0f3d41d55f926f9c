//! The `smoe` binary end to end on the tiny Mixtral fixture: run (streamed and --json), chat,
//! tokenize, perplexity, inspect, and clear failures.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

#[path = "common/tiny.rs"]
mod tiny;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use tiny::{golden, smoe, tiny_dir, tiny_gguf};

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

#[test]
fn run_json_matches_the_golden_greedy_continuation() {
    let model = tiny_gguf("f32");
    let g = golden();
    let p = &g["prompts"][0];
    let o = smoe(&[
        "run",
        "-m",
        model.to_str().unwrap(),
        "-p",
        p["text"].as_str().unwrap(),
        "-n",
        "8",
        "--temp",
        "0",
        "--json",
        "--cache-type",
        "f32",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(ids(&v["prompt_tokens"]), ids(&p["ids"]));
    assert_eq!(ids(&v["tokens"])[..8], ids(&p["greedy"]["ids"])[..8]);
    assert_eq!(v["finish_reason"], "length");
    assert!(v["timings"]["generation_tokens_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn run_streams_only_the_completion() {
    let model = tiny_gguf("q8_0");
    let m = model.to_str().unwrap();
    let prompt = "Once upon a time, there was";
    let json = smoe(&[
        "run", "-m", m, "-p", prompt, "-n", "12", "--temp", "0", "--json",
    ]);
    let text = serde_json::from_str::<serde_json::Value>(stdout(&json).trim()).unwrap()["text"]
        .as_str()
        .unwrap()
        .to_string();
    let streamed = smoe(&["run", "-m", m, "-p", prompt, "-n", "12", "--temp", "0"]);
    assert!(streamed.status.success());
    let out = stdout(&streamed);
    assert_eq!(out.trim_end_matches('\n'), text);
    assert!(!out.contains(prompt), "the prompt must not be echoed");
    assert!(
        String::from_utf8_lossy(&streamed.stderr).contains("tok/s"),
        "timings go to stderr"
    );
}

#[test]
fn same_seed_same_text() {
    let model = tiny_gguf("q4_0");
    let m = model.to_str().unwrap();
    let run = |seed: &str| {
        stdout(&smoe(&[
            "run",
            "-m",
            m,
            "-p",
            "The capital of France is",
            "-n",
            "16",
            "--temp",
            "1.0",
            "--seed",
            seed,
        ]))
    };
    assert_eq!(run("7"), run("7"));
    assert_ne!(run("7"), run("8"));
}

#[test]
fn chat_flag_renders_the_mixtral_instruct_template() {
    let model = tiny_gguf("q8_0");
    let o = smoe(&[
        "run",
        "-m",
        model.to_str().unwrap(),
        "-p",
        "Hello there",
        "-n",
        "1",
        "--chat",
        "--json",
        "--temp",
        "0",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let p = ids(&v["prompt_tokens"]);
    // <s> [INST] Hello there [/INST], as transformers' apply_chat_template renders and tokenizes it.
    assert_eq!(
        p,
        vec![1, 733, 16289, 28793, 22557, 736, 733, 28748, 16289, 28793]
    );
}

#[test]
fn a_prompt_longer_than_the_context_is_a_clear_error() {
    let model = tiny_gguf("q8_0");
    let long = "word ".repeat(200);
    let o = smoe(&[
        "run",
        "-m",
        model.to_str().unwrap(),
        "-p",
        &long,
        "--ctx",
        "64",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("context of 64"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn chat_keeps_the_cache_between_turns_and_quits_on_eof() {
    let model = tiny_gguf("q8_0");
    let mut child = Command::new(env!("CARGO_BIN_EXE_smoe"))
        .args([
            "chat",
            "-m",
            model.to_str().unwrap(),
            "-n",
            "6",
            "--temp",
            "0",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Hello\nTell me more\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    let reused: Vec<usize> = err
        .lines()
        .filter_map(|l| {
            l.split_once('[')?
                .1
                .split(" tokens reused")
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(reused.len(), 2, "{err}");
    assert_eq!(reused[0], 0);
    assert!(
        reused[1] > 8,
        "the second turn should reuse the first turn's tokens: {err}"
    );
}

#[test]
fn tokenize_prints_ids() {
    let model = tiny_gguf("q4_0");
    let o = smoe(&[
        "tokenize",
        "-m",
        model.to_str().unwrap(),
        "-p",
        "Hello world!",
    ]);
    assert_eq!(stdout(&o).trim(), "[1, 22557, 1526, 28808]");
}

#[test]
fn perplexity_json_matches_transformers() {
    let model = tiny_gguf("f32");
    let text = tiny_dir().join("golden/ppl.txt");
    let o = smoe(&[
        "perplexity",
        "-m",
        model.to_str().unwrap(),
        "-f",
        text.to_str().unwrap(),
        "--ctx",
        "32",
        "--chunks",
        "8",
        "--cache-type",
        "f32",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let want = golden()["perplexity"]["ctx"][0]["ppl"].as_f64().unwrap();
    let got = v["perplexity"].as_f64().unwrap();
    assert!((got - want).abs() / want < 1e-4, "{got} vs {want}");
    assert_eq!(v["chunks"].as_array().unwrap().len(), 8);
}

#[test]
fn broken_and_foreign_files_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"GGUF\x03\x00\x00\x00garbage").unwrap();
    for args in [
        vec!["run", "-m", junk.to_str().unwrap(), "-p", "x"],
        vec!["inspect", junk.to_str().unwrap()],
        vec!["run", "-m", "/nonexistent.gguf", "-p", "x"],
    ] {
        let o = smoe(&args);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.starts_with("error:") && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
    // A valid GGUF that is not a model: the all-types fixture from the gguf package.
    let other = tiny::fixtures().join("gguf/all_types.gguf");
    let o = smoe(&["run", "-m", other.to_str().unwrap(), "-p", "x"]);
    assert!(!o.status.success());
}

#[test]
fn zero_tokens_generates_nothing() {
    let model = tiny_gguf("q8_0");
    let o = smoe(&[
        "run",
        "-m",
        model.to_str().unwrap(),
        "-p",
        "Hello",
        "-n",
        "0",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["tokens"], serde_json::json!([]));
    assert_eq!(v["finish_reason"], "length");
}

#[test]
fn bench_json_reports_every_test_and_the_kernels_that_ran() {
    let model = tiny_gguf("q8_0");
    let o = smoe(&[
        "bench",
        "-m",
        model.to_str().unwrap(),
        "-p",
        "8",
        "-n",
        "4",
        "-t",
        "1",
        "-r",
        "2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let tests: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["test"].as_str().unwrap())
        .collect();
    assert_eq!(tests, ["pp8", "tg4"]);
    for r in v["results"].as_array().unwrap() {
        assert_eq!(r["threads"], 1);
        assert!(r["tps_mean"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["tps_sd"].as_f64().unwrap() >= 0.0, "{r}");
    }
    let isa = v["kernels"].as_str().unwrap();
    assert!(
        smoe_quant::kernels::Isa::from_name(isa).is_some(),
        "kernels {isa:?}"
    );
}
