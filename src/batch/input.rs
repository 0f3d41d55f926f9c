//! Reading batch inputs into requests. The kind of an input is decided by its name:
//! - `*.jsonl`: one JSON request a line (`{"id", "prompt"}` or `{"id", "messages"}`, optional
//!   `max_tokens`, `temperature`, `top_p`, `top_k`, `min_p`, `seed`, `stop`);
//! - `*.txt`: the whole file is one prompt, its id the file name (trailing newlines dropped, as the
//!   shell's `"$(cat FILE)"` does);
//! - a folder: every `*.txt` file in it, as above, in name order;
//! - any other name: plain text, one prompt a line, its id the line number.
//!
//! A request that cannot run is kept, with the reason, so it becomes an error record.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::tokenizer::ChatMessage;
use crate::{Error, Result};

/// What to complete.
#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    Text(String),
    /// Rendered with the model's chat template.
    Chat(Vec<ChatMessage>),
}

/// A request's own settings; `None` takes the command's default.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestBody {
    pub prompt: Prompt,
    pub max_tokens: Option<usize>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub min_p: Option<f32>,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
}

/// One input request, valid or not.
#[derive(Clone, Debug)]
pub struct Request {
    /// The request's id as given (a string or a number); `Null` when none could be read.
    pub id: Value,
    /// 1-based line in its file, for line-based inputs.
    pub line: Option<usize>,
    /// The file it came from.
    pub source: PathBuf,
    /// The request, or why it cannot run.
    pub body: std::result::Result<RequestBody, String>,
}

impl Request {
    /// Where the request came from, for messages: `file:line` or `file`.
    pub fn origin(&self) -> String {
        match self.line {
            Some(l) => format!("{}:{l}", self.source.display()),
            None => self.source.display().to_string(),
        }
    }
}

/// How an input path is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    Jsonl,
    /// One prompt per file.
    TextFile,
    /// A folder of `.txt` files.
    Folder,
    /// One prompt per line.
    Lines,
}

pub fn input_kind(path: &Path) -> InputKind {
    if path.is_dir() {
        return InputKind::Folder;
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("jsonl") => InputKind::Jsonl,
        Some(e) if e.eq_ignore_ascii_case("txt") => InputKind::TextFile,
        _ => InputKind::Lines,
    }
}

/// Every request of `paths`, in order.
pub fn read_inputs(paths: &[PathBuf]) -> Result<Vec<Request>> {
    let mut out = Vec::new();
    let several = paths.len() > 1;
    for path in paths {
        match input_kind(path) {
            InputKind::Jsonl => read_jsonl(path, &mut out)?,
            InputKind::TextFile => out.push(read_text_file(path)?),
            InputKind::Folder => {
                let rd = std::fs::read_dir(path).map_err(|e| io(path, e))?;
                let mut files = Vec::new();
                for entry in rd {
                    let p = entry.map_err(|e| io(path, e))?.path();
                    if p.is_file() && input_kind(&p) == InputKind::TextFile {
                        files.push(p);
                    }
                }
                files.sort();
                for f in files {
                    out.push(read_text_file(&f)?);
                }
            }
            InputKind::Lines => read_lines(path, several, &mut out)?,
        }
    }
    Ok(out)
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_text_file(path: &Path) -> Result<Request> {
    let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Request {
        id: Value::String(name),
        line: None,
        source: path.to_path_buf(),
        body: Ok(plain(text.trim_end_matches(['\n', '\r']).to_string())),
    })
}

fn plain(prompt: String) -> RequestBody {
    RequestBody {
        prompt: Prompt::Text(prompt),
        max_tokens: None,
        temperature: None,
        top_p: None,
        top_k: None,
        min_p: None,
        seed: None,
        stop: Vec::new(),
    }
}

/// Non-blank lines with their 1-based numbers.
fn lines_of(path: &Path) -> Result<Vec<(usize, String)>> {
    let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l.to_string()))
        .collect())
}

fn read_lines(path: &Path, several: bool, out: &mut Vec<Request>) -> Result<()> {
    let name = path.display().to_string();
    for (n, line) in lines_of(path)? {
        let id = if several {
            Value::String(format!("{name}:{n}"))
        } else {
            Value::from(n)
        };
        out.push(Request {
            id,
            line: Some(n),
            source: path.to_path_buf(),
            body: Ok(plain(line)),
        });
    }
    Ok(())
}

fn read_jsonl(path: &Path, out: &mut Vec<Request>) -> Result<()> {
    for (n, line) in lines_of(path)? {
        let (id, body) = match serde_json::from_str::<Value>(&line) {
            Err(e) => (Value::Null, Err(format!("invalid JSON: {e}"))),
            Ok(Value::Object(obj)) => parse_object(&obj),
            Ok(_) => (Value::Null, Err("the line is not a JSON object".into())),
        };
        out.push(Request {
            id,
            line: Some(n),
            source: path.to_path_buf(),
            body,
        });
    }
    Ok(())
}

type Parsed = (Value, std::result::Result<RequestBody, String>);

fn parse_object(obj: &Map<String, Value>) -> Parsed {
    let id = match obj.get("id") {
        Some(v @ (Value::String(_) | Value::Number(_))) => v.clone(),
        Some(Value::Null) | None => return (Value::Null, Err("no \"id\"".into())),
        Some(_) => {
            return (
                Value::Null,
                Err("\"id\" must be a string or a number".into()),
            )
        }
    };
    let body = parse_body(obj);
    (id, body)
}

fn parse_body(obj: &Map<String, Value>) -> std::result::Result<RequestBody, String> {
    let prompt = match (obj.get("prompt"), obj.get("messages")) {
        (Some(_), Some(_)) => return Err("give \"prompt\" or \"messages\", not both".into()),
        (Some(Value::String(s)), None) => Prompt::Text(s.clone()),
        (Some(_), None) => return Err("\"prompt\" must be a string".into()),
        (None, Some(m)) => Prompt::Chat(parse_messages(m)?),
        (None, None) => return Err("no prompt: give \"prompt\" or \"messages\"".into()),
    };
    Ok(RequestBody {
        prompt,
        max_tokens: field(obj, "max_tokens", Value::as_u64)?.map(|v| v as usize),
        temperature: field(obj, "temperature", Value::as_f64)?.map(|v| v as f32),
        top_p: field(obj, "top_p", Value::as_f64)?.map(|v| v as f32),
        top_k: field(obj, "top_k", Value::as_u64)?.map(|v| v as usize),
        min_p: field(obj, "min_p", Value::as_f64)?.map(|v| v as f32),
        seed: field(obj, "seed", Value::as_u64)?,
        stop: match obj.get("stop") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or("\"stop\" must be a string or a list of strings")?,
            Some(_) => return Err("\"stop\" must be a string or a list of strings".into()),
        },
    })
}

/// An optional field read by `get` (`as_u64`, `as_f64`); a value of another type is an error.
fn field<T>(
    obj: &Map<String, Value>,
    name: &str,
    get: fn(&Value) -> Option<T>,
) -> std::result::Result<Option<T>, String> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => get(v).map(Some).ok_or_else(|| {
            let want = if name == "temperature" || name.ends_with("_p") {
                "a number"
            } else {
                "a non-negative integer"
            };
            format!("\"{name}\" must be {want}, not {v}")
        }),
    }
}

fn parse_messages(v: &Value) -> std::result::Result<Vec<ChatMessage>, String> {
    let bad = || "\"messages\" must be a non-empty list of {\"role\": string, \"content\": string}";
    let list = v.as_array().filter(|a| !a.is_empty()).ok_or_else(bad)?;
    list.iter()
        .map(|m| {
            let role = m.get("role").and_then(Value::as_str).ok_or_else(bad)?;
            let content = m.get("content").and_then(Value::as_str).ok_or_else(bad)?;
            Ok(ChatMessage::new(role, content))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Parsed {
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(o)) => parse_object(&o),
            _ => (Value::Null, Err("not an object".into())),
        }
    }

    #[test]
    fn fields_and_their_types() {
        let (id, body) = parse(
            r#"{"id": 3, "prompt": "hi", "max_tokens": 5, "temperature": 0, "stop": ["a", "b"], "seed": 9}"#,
        );
        assert_eq!(id, Value::from(3));
        let body = body.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(body.prompt, Prompt::Text("hi".into()));
        assert_eq!(
            (body.max_tokens, body.temperature, body.seed),
            (Some(5), Some(0.0), Some(9))
        );
        assert_eq!(body.stop, vec!["a".to_string(), "b".to_string()]);
        let (_, body) =
            parse(r#"{"id": "x", "messages": [{"role": "user", "content": "yo"}], "stop": "\n"}"#);
        assert!(matches!(
            body,
            Ok(RequestBody {
                prompt: Prompt::Chat(_),
                ..
            })
        ));
        for (line, needle) in [
            (r#"{"id": 1}"#, "no prompt"),
            (r#"{"prompt": "x"}"#, "no \"id\""),
            (r#"{"id": 1, "prompt": 5}"#, "\"prompt\" must be"),
            (
                r#"{"id": 1, "prompt": "x", "max_tokens": "ten"}"#,
                "\"max_tokens\" must be",
            ),
            (
                r#"{"id": 1, "prompt": "x", "temperature": "hot"}"#,
                "\"temperature\" must be a number",
            ),
            (r#"{"id": 1, "messages": []}"#, "\"messages\" must be"),
            (
                r#"{"id": 1, "prompt": "x", "stop": [1]}"#,
                "\"stop\" must be",
            ),
        ] {
            match parse(line).1 {
                Err(e) => assert!(e.contains(needle), "{line}: {e}"),
                Ok(_) => panic!("{line} should be rejected"),
            }
        }
    }
}
