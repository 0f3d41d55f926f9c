//! `smoe chat`: an interactive multi-turn conversation. The KV cache is kept between turns: each
//! turn re-renders the conversation with the chat template and feeds only the tokens that differ
//! from what the cache already holds. Ctrl-C stops a reply; Ctrl-C at the prompt or Ctrl-D quits.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use smoe::generate::{Session, DEFAULT_N_BATCH};
use smoe::model::{CacheType, Mixtral};
use smoe::sampler::Sampler;
use smoe::tokenizer::ChatMessage;

use super::common::{init_threads, open_model, ModelArgs, SampleArgs};

#[derive(Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sample: SampleArgs,
    /// Tokens per reply at most.
    #[arg(short = 'n', long = "n-predict", default_value_t = 512)]
    pub n_predict: usize,
    /// Context size in tokens; default: min(4096, the model's).
    #[arg(short = 'c', long = "ctx")]
    pub ctx: Option<usize>,
    /// KV cache element type: f16 (default) or f32.
    #[arg(long = "cache-type", default_value = "f16")]
    pub cache_type: CacheType,
}

pub fn run(a: ChatArgs) -> Result<()> {
    init_threads(a.model.threads)?;
    let (file, tok, _) = open_model(&a.model)?;
    let model = Mixtral::load_with(&file, &a.model.mem.load_options(0))?;
    let n_ctx = a.ctx.unwrap_or(model.cfg.n_ctx_train.min(4096));
    let mut sampler = Sampler::new(a.sample.config(), model.cfg.n_vocab);
    let mut session = Session::new(&model, n_ctx, DEFAULT_N_BATCH, a.cache_type);
    let generating = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (generating, stop) = (generating.clone(), stop.clone());
        ctrlc::set_handler(move || {
            if generating.load(Ordering::SeqCst) {
                stop.store(true, Ordering::SeqCst);
            } else {
                eprintln!();
                std::process::exit(130);
            }
        })?;
    }
    eprintln!(
        "smoe chat: {} — type a message; Ctrl-C stops a reply, Ctrl-D quits.",
        file.path().display()
    );
    let mut messages: Vec<ChatMessage> = Vec::new();
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        eprint!("\n> ");
        line.clear();
        if stdin.lock().read_line(&mut line)? == 0 {
            eprintln!();
            return Ok(());
        }
        let text = line.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        messages.push(ChatMessage::new("user", text));
        let ids = loop {
            let ids = tok.encode(&tok.render_chat(&messages, true)?, false)?;
            if ids.len() + 1 < n_ctx || messages.len() <= 1 {
                break ids;
            }
            // Forget the oldest exchange to make room.
            messages.drain(..2.min(messages.len() - 1));
        };
        if ids.len() + 1 >= n_ctx {
            eprintln!(
                "smoe: this message alone ({} tokens) does not fit in the context of {n_ctx}",
                ids.len()
            );
            messages.pop();
            continue;
        }
        let keep = ids
            .iter()
            .zip(session.tokens())
            .take_while(|(a, b)| a == b)
            .count()
            .min(ids.len() - 1);
        session.truncate(keep);
        let mut dec = tok.stream_decoder();
        let mut reply = String::new();
        let mut first_piece_spaced = None;
        let mut piece = String::with_capacity(64);
        let mut out = std::io::stdout().lock();
        stop.store(false, Ordering::SeqCst);
        generating.store(true, Ordering::SeqCst);
        let r = session.generate(
            &ids[keep..],
            a.n_predict,
            &mut sampler,
            &[tok.eos()],
            |id| {
                first_piece_spaced.get_or_insert_with(|| {
                    tok.token_to_piece(id)
                        .is_some_and(|p| p.starts_with('\u{2581}'))
                });
                if dec.push_into(id, &mut piece).is_ok() {
                    let _ = out.write_all(piece.as_bytes()).and_then(|_| out.flush());
                    reply.push_str(&piece);
                }
                !stop.load(Ordering::SeqCst)
            },
        );
        generating.store(false, Ordering::SeqCst);
        let tail = dec.finish();
        reply.push_str(&tail);
        writeln!(out, "{tail}")?;
        let stats = r?;
        eprintln!(
            "[{keep} tokens reused from the cache, {} new; {} generated at {:.1} tok/s]",
            ids.len() - keep,
            stats.generated,
            stats.gen_tps()
        );
        // Keep the reply's leading space when the model produced one ("▁Hello"): the template then
        // re-renders "[/INST] Hello", which tokenizes to what was generated, so the next turn reuses
        // the reply from the cache instead of processing it again.
        let reply = reply.trim_start();
        let content = if first_piece_spaced == Some(true) {
            format!(" {reply}")
        } else {
            reply.to_string()
        };
        messages.push(ChatMessage::new("assistant", content));
    }
}
