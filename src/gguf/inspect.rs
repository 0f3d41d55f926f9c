//! The summaries behind `smoe inspect`: the JSON document (metadata + tensor table), the human
//! report, and the MoE parameter count (all parameters vs those touched per token).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::ser::{Serialize, SerializeMap, SerializeStruct, Serializer};
use smoe_quant::GgmlType;

use super::header::{GgufHeader, Metadata, TensorInfo};
use super::keys;
use super::value::Value;
use crate::Result;

/// Arrays longer than this are summarized (`[STRING × 32000]` / `{"type": "STRING", "len": 32000}`).
pub const MAX_ARRAY_ITEMS: usize = 16;

/// A metadata value as JSON: scalars as numbers/bools/strings (FLOAT32 widened to f64, exactly as
/// Python reads it; NaN and infinities become null), arrays of at most [`MAX_ARRAY_ITEMS`] as JSON
/// arrays, longer ones as `{"type": T, "len": N}` with T the `GGUFValueType` name.
pub fn json_value(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::U8(x) => J::from(*x),
        Value::I8(x) => J::from(*x),
        Value::U16(x) => J::from(*x),
        Value::I16(x) => J::from(*x),
        Value::U32(x) => J::from(*x),
        Value::I32(x) => J::from(*x),
        Value::U64(x) => J::from(*x),
        Value::I64(x) => J::from(*x),
        Value::F32(x) => J::from(f64::from(*x)),
        Value::F64(x) => J::from(*x),
        Value::Bool(x) => J::from(*x),
        Value::String(s) => J::from(s.as_str()),
        Value::Array(a) if a.len() > MAX_ARRAY_ITEMS => {
            serde_json::json!({"type": a.elem.name(), "len": a.len()})
        }
        Value::Array(a) => J::Array(a.items.iter().map(json_value).collect()),
    }
}

/// `{"version": N, "metadata": {key: value, ...}, "tensors": [{"name", "type", "shape", "offset",
/// "bytes"}]}`, metadata in file order. Serialize it with `serde_json`.
#[derive(Debug, Clone, Copy)]
pub struct InspectJson<'a>(pub &'a GgufHeader);

struct MetaJson<'a>(&'a Metadata);
struct TensorJson<'a>(&'a TensorInfo);

impl Serialize for InspectJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Inspect", 3)?;
        st.serialize_field("version", &self.0.version())?;
        st.serialize_field("metadata", &MetaJson(self.0.metadata()))?;
        let tensors: Vec<TensorJson<'_>> = self.0.tensors().iter().map(TensorJson).collect();
        st.serialize_field("tensors", &tensors)?;
        st.end()
    }
}

impl Serialize for MetaJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0.iter() {
            m.serialize_entry(k, &json_value(v))?;
        }
        m.end()
    }
}

impl Serialize for TensorJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let t = self.0;
        let mut st = s.serialize_struct("Tensor", 5)?;
        st.serialize_field("name", t.name())?;
        st.serialize_field("type", t.ty().name())?;
        st.serialize_field("shape", t.dims())?;
        st.serialize_field("offset", &t.offset())?;
        st.serialize_field("bytes", &t.n_bytes())?;
        st.end()
    }
}

/// Parameter counts of a MoE model: all of them, and those one token touches (attention, norms,
/// router, `n_expert_used / n_expert` of the routed experts, one embedding row, the output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoeParams {
    pub n_expert: u64,
    pub n_expert_used: u64,
    pub total: u128,
    /// Of `total`, the routed experts' parameters.
    pub experts: u128,
    pub touched: u128,
}

/// Whether the tensor holds routed experts: merged `blk.N.ffn_{gate,up,down}_exps.weight`
/// (n_expert is the outermost dim) or legacy per-expert `blk.N.ffn_{gate,up,down}.E.weight`.
pub fn is_routed_expert(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    match parts.as_slice() {
        ["blk", _, t, ..] if t.ends_with("_exps") => true,
        ["blk", _, t, e, "weight"] => {
            matches!(*t, "ffn_gate" | "ffn_up" | "ffn_down") && e.parse::<u32>().is_ok()
        }
        _ => false,
    }
}

/// MoE parameter counts, or `None` when the file is not MoE (`{arch}.expert_count` absent or 0).
/// Errors on a MoE file without a valid `{arch}.expert_used_count`.
pub fn moe_params(h: &GgufHeader) -> Result<Option<MoeParams>> {
    let Some(arch) = h.get_str_opt(keys::GENERAL_ARCHITECTURE)? else {
        return Ok(None);
    };
    let n_expert = h
        .get_u64_opt(&keys::arch_key(arch, keys::EXPERT_COUNT))?
        .unwrap_or(0);
    if n_expert == 0 {
        return Ok(None);
    }
    let used_key = keys::arch_key(arch, keys::EXPERT_USED_COUNT);
    let n_expert_used = h.get_u64(&used_key)?;
    if n_expert_used == 0 || n_expert_used > n_expert {
        return Err(h.err(format!(
            "key '{used_key}' = {n_expert_used}: expected 1..={n_expert} (the expert count)"
        )));
    }
    let tied_output = h.tensor("output.weight").is_none();
    let (mut total, mut experts, mut touched) = (0u128, 0u128, 0u128);
    for t in h.tensors() {
        let n = u128::from(t.n_elements());
        total += n;
        if is_routed_expert(t.name()) {
            experts += n;
            touched += n * u128::from(n_expert_used) / u128::from(n_expert);
        } else if t.name() == "token_embd.weight" && !tied_output {
            // One row per token: n_embd = dims[0].
            touched += u128::from(t.dims().first().copied().unwrap_or(0));
        } else {
            touched += n;
        }
    }
    Ok(Some(MoeParams {
        n_expert,
        n_expert_used,
        total,
        experts,
        touched,
    }))
}

/// The human report: header facts, metadata (long arrays summarized), the tensor table, totals by
/// type, and for MoE files the parameters touched per token (or why they cannot be counted).
pub fn render_text(h: &GgufHeader) -> String {
    let mut o = String::new();
    // Writing to a String cannot fail; the fmt::Results below are ignored for that reason.
    let _ = writeln!(
        o,
        "{}: GGUF v{}, {} bytes, alignment {}, data section at {}",
        h.path().display(),
        h.version(),
        h.file_len(),
        h.alignment(),
        h.data_offset()
    );
    let _ = writeln!(o, "\nmetadata ({} keys)", h.metadata().len());
    let key_w = h.metadata().iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in h.metadata().iter() {
        let _ = writeln!(
            o,
            "  {k:<key_w$}  {:<7}  {}",
            v.ty().name(),
            v.display_summary(MAX_ARRAY_ITEMS)
        );
    }

    let _ = writeln!(o, "\ntensors ({})", h.tensors().len());
    let name_w = h
        .tensors()
        .iter()
        .map(|t| t.name().len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        o,
        "  {:<name_w$}  {:<7}  {:<28}  {:>14}",
        "name", "type", "shape", "bytes"
    );
    for t in h.tensors() {
        let _ = writeln!(
            o,
            "  {:<name_w$}  {:<7}  {:<28}  {:>14}",
            t.name(),
            t.ty().name(),
            format!("{:?}", t.dims()),
            t.n_bytes()
        );
    }

    let mut by_type: BTreeMap<GgmlType, (usize, u128, u128)> = BTreeMap::new();
    for t in h.tensors() {
        let e = by_type.entry(t.ty()).or_default();
        e.0 += 1;
        e.1 += u128::from(t.n_elements());
        e.2 += u128::from(t.n_bytes());
    }
    let _ = writeln!(o, "\ntotals by type");
    let (mut n_all, mut p_all, mut b_all) = (0usize, 0u128, 0u128);
    for (ty, (n, p, b)) in &by_type {
        let _ = writeln!(
            o,
            "  {:<7}  {n:>5} tensors  {:>10} params  {:>10}",
            ty.name(),
            human_count(*p),
            human_bytes(*b)
        );
        n_all += n;
        p_all += p;
        b_all += b;
    }
    let _ = writeln!(
        o,
        "  {:<7}  {n_all:>5} tensors  {:>10} params  {:>10}",
        "all",
        human_count(p_all),
        human_bytes(b_all)
    );

    match moe_params(h) {
        Ok(Some(m)) => write_moe(&mut o, &m),
        Ok(None) => {}
        Err(e) => {
            let _ = writeln!(o, "\nMoE: parameters not counted: {e}");
        }
    }
    o
}

fn write_moe(o: &mut String, m: &MoeParams) {
    let pct = if m.total == 0 {
        0.0
    } else {
        m.touched as f64 * 100.0 / m.total as f64
    };
    let _ = writeln!(
        o,
        "\nMoE: {} experts, {} used per token\n  parameters: {} in all ({} in routed experts), {} touched per token ({pct:.1} %)",
        m.n_expert,
        m.n_expert_used,
        human_count(m.total),
        human_count(m.experts),
        human_count(m.touched)
    );
}

/// 46_702_792_704 -> "46.70 B".
pub fn human_count(n: u128) -> String {
    let f = n as f64;
    match n {
        0..=9_999 => n.to_string(),
        10_000..=999_999_999 => format!("{:.2} M", f / 1e6),
        _ => format!("{:.2} B", f / 1e9),
    }
}

/// 1536 -> "1.50 KiB".
pub fn human_bytes(n: u128) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut f = n as f64;
    let mut u = 0;
    while f >= 1024.0 && u + 1 < UNITS.len() {
        f /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{f:.2} {}", UNITS[u])
    }
}
