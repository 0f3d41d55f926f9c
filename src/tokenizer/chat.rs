//! Chat templates: the Jinja templates of tokenizer_config.json / GGUF `tokenizer.chat_template`,
//! rendered with minijinja the way `transformers.apply_chat_template` renders them.

use minijinja::value::Serde;
use minijinja::{context, Environment, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Mixtral-8x7B-Instruct's template: the fallback for model files that carry none.
pub const MIXTRAL_CHAT_TEMPLATE: &str = "{{ bos_token }}{% for message in messages %}\
{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\
{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}\
{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}\
{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}\
{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// "system", "user" or "assistant"
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Prefix of the error text produced by the template's `raise_exception(msg)`.
const RAISED: &str = "template raised: ";

fn raise_exception(msg: String) -> std::result::Result<String, minijinja::Error> {
    Err(minijinja::Error::new(
        ErrorKind::InvalidOperation,
        format!("{RAISED}{msg}"),
    ))
}

/// Render `messages` with `template` (Mixtral-Instruct's if `None`), as transformers does: Jinja with
/// trim_blocks and lstrip_blocks, `bos_token`, `eos_token`, `add_generation_prompt`, `raise_exception`,
/// and Python string methods (`.strip()`, `.startswith()` ...). An exception raised by the template is
/// an error whose text contains the template's message; so is an empty conversation (as in transformers).
pub fn render_chat(
    template: Option<&str>,
    messages: &[ChatMessage],
    bos: &str,
    eos: &str,
    add_generation_prompt: bool,
) -> Result<String> {
    if messages.is_empty() {
        return Err(Error::ChatTemplate(
            "cannot apply chat template to an empty conversation".into(),
        ));
    }
    let template = template.unwrap_or(MIXTRAL_CHAT_TEMPLATE);
    let mut env = Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .map_err(|e| Error::ChatTemplate(format!("syntax config: {e}")))?;
    env.set_syntax(syntax);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);
    let ctx = context! {
        messages => Serde(messages),
        bos_token => bos,
        eos_token => eos,
        add_generation_prompt => add_generation_prompt,
    };
    env.render_str(template, ctx).map_err(|e| {
        let msg = match e.detail() {
            Some(d) if d.starts_with(RAISED) => d.to_owned(),
            _ => format!("{e:#}"),
        };
        Error::ChatTemplate(msg)
    })
}
