//! Where finished requests go, durably: a JSONL file (one record a line, appended as one `write` of a
//! full line, then fsync'd) or a folder (one `.txt` completion per request, written to a temporary
//! file and renamed into place). Both know what an earlier, interrupted run already finished, so a
//! re-run skips it; a torn last JSONL line is cut away before appending.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::input::Request;
use crate::{Error, Result};

/// The outcome of one request.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub id: Value,
    /// `file:line` (or `file`) of the request; written for failed requests only.
    pub at: String,
    pub text: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// "stop", "length" or "error".
    pub finish_reason: &'static str,
    pub error: Option<String>,
    pub seconds: f64,
}

impl Record {
    pub fn failed(req: &Request, error: String) -> Record {
        Record {
            id: req.id.clone(),
            at: req.origin(),
            text: String::new(),
            prompt_tokens: 0,
            completion_tokens: 0,
            finish_reason: "error",
            error: Some(format!("{}: {error}", req.origin())),
            seconds: 0.0,
        }
    }

    pub fn is_error(&self) -> bool {
        self.error.is_some()
    }

    /// The JSON line, without the newline.
    pub fn to_json(&self) -> String {
        let mut v = json!({
            "id": self.id,
            "text": self.text,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "finish_reason": self.finish_reason,
            "seconds": self.seconds,
        });
        if let (Some(e), Some(obj)) = (&self.error, v.as_object_mut()) {
            obj.insert("error".into(), Value::String(e.clone()));
            obj.insert("at".into(), Value::String(self.at.clone()));
        }
        v.to_string()
    }
}

/// What identifies a request across runs: its id, or where it was read if it has none.
pub fn request_key(id: &Value, at: &str) -> String {
    match id {
        Value::Null => format!("at:{at}"),
        v => v.to_string(),
    }
}

/// A destination for records that knows which requests are already done.
pub trait Sink {
    fn is_done(&self, req: &Request) -> bool;
    /// Stores `rec` durably before returning.
    fn write(&mut self, rec: &Record) -> Result<()>;
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `-o OUT.jsonl`.
#[derive(Debug)]
pub struct JsonlSink {
    path: PathBuf,
    file: File,
    done: HashSet<String>,
}

/// What opening an existing output found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resume {
    /// Records already there.
    pub records: usize,
    /// Bytes of a torn last line that were cut away.
    pub cut_bytes: usize,
}

impl JsonlSink {
    /// Opens (or creates) `path`, reads the records already there and cuts a torn last line: bytes
    /// after the last newline, or a last line that is not a JSON record. Any other line that is not
    /// a record is an error (the file is not ours, and is left alone).
    pub fn open(path: &Path) -> Result<(JsonlSink, Resume)> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| io(path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| io(path, e))?;
        let mut done = HashSet::new();
        let mut good_end = 0; // end of the last good line, newline included
        let mut records = 0;
        let mut start = 0;
        while let Some(nl) = bytes[start..].iter().position(|&b| b == b'\n') {
            let end = start + nl + 1;
            let line = &bytes[start..end - 1];
            match record_key_of(line) {
                Some(key) => {
                    done.insert(key);
                    records += 1;
                    good_end = end;
                }
                None if end == bytes.len() => break, // the torn last line
                None if line.iter().all(u8::is_ascii_whitespace) => good_end = end,
                None => {
                    return Err(Error::Batch(format!(
                        "{}: byte {start} starts a line that is not a batch record; not appending to a file that is not ours",
                        path.display()
                    )))
                }
            }
            start = end;
        }
        let cut_bytes = bytes.len() - good_end;
        if cut_bytes > 0 {
            file.set_len(good_end as u64).map_err(|e| io(path, e))?;
            file.sync_all().map_err(|e| io(path, e))?;
        }
        let sink = JsonlSink {
            path: path.to_path_buf(),
            file,
            done,
        };
        Ok((sink, Resume { records, cut_bytes }))
    }
}

/// The key of a JSONL record line, `None` if it is not one.
fn record_key_of(line: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(line).ok()?;
    let obj = v.as_object()?;
    obj.get("finish_reason")?.as_str()?;
    let id = obj.get("id")?;
    let at = obj.get("at").and_then(Value::as_str).unwrap_or_default();
    Some(request_key(id, at))
}

impl Sink for JsonlSink {
    fn is_done(&self, req: &Request) -> bool {
        self.done.contains(&request_key(&req.id, &req.origin()))
    }

    fn write(&mut self, rec: &Record) -> Result<()> {
        let mut line = rec.to_json();
        line.push('\n');
        // One write of the whole line (the file is in append mode), then to disk.
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.sync_data())
            .map_err(|e| io(&self.path, e))?;
        self.done.insert(request_key(&rec.id, &rec.at));
        Ok(())
    }
}

/// `--out-dir DIR`: `DIR/<id>.txt` per request (an id that is a file name ending in `.txt` keeps
/// it). Failed requests write nothing (they are reported and counted).
#[derive(Debug)]
pub struct DirSink {
    dir: PathBuf,
}

const TMP_SUFFIX: &str = ".smoe-tmp";

impl DirSink {
    /// Creates `dir` if needed and removes temporary files an interrupted run left.
    pub fn open(dir: &Path) -> Result<DirSink> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
            let p = entry.map_err(|e| io(dir, e))?.path();
            if p.to_string_lossy().ends_with(TMP_SUFFIX) {
                std::fs::remove_file(&p).map_err(|e| io(&p, e))?;
            }
        }
        Ok(DirSink {
            dir: dir.to_path_buf(),
        })
    }

    /// The output file of a request id.
    pub fn file_for(&self, id: &Value) -> PathBuf {
        let raw = match id {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        let mut name: String = raw
            .chars()
            .map(|c| {
                if c == '/' || c == '\\' || c.is_control() {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        if name.is_empty() || name.starts_with('.') {
            name.insert(0, '_');
        }
        if !name.ends_with(".txt") {
            name.push_str(".txt");
        }
        self.dir.join(name)
    }
}

impl Sink for DirSink {
    fn is_done(&self, req: &Request) -> bool {
        req.body.is_ok() && self.file_for(&req.id).exists()
    }

    fn write(&mut self, rec: &Record) -> Result<()> {
        if rec.is_error() {
            return Ok(());
        }
        let path = self.file_for(&rec.id);
        let mut tmp = path.clone().into_os_string();
        tmp.push(TMP_SUFFIX);
        let tmp = PathBuf::from(tmp);
        let mut f = File::create(&tmp).map_err(|e| io(&tmp, e))?;
        f.write_all(rec.text.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        // The rename itself is durable once the folder is synced.
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}
