//! An optional observer of what goes into each matrix multiplication, for importance matrices
//! (`smoe imatrix`). The forward pass calls [`Hook::see`] with the f32 input rows of every weight
//! matrix; with [`Hook::none`] each call is one branch.

/// Which weight matrix a set of input rows is multiplied by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Site {
    AttnQ,
    AttnK,
    AttnV,
    AttnOutput,
    /// The router, `ffn_gate_inp`.
    Router,
    FfnGateExps,
    FfnUpExps,
    FfnDownExps,
    Output,
}

impl Site {
    /// The GGUF name of the tensor at this site in layer `il` (`il` is ignored for `Output`).
    pub fn tensor_name(self, il: usize) -> String {
        let short = match self {
            Site::AttnQ => "attn_q",
            Site::AttnK => "attn_k",
            Site::AttnV => "attn_v",
            Site::AttnOutput => "attn_output",
            Site::Router => "ffn_gate_inp",
            Site::FfnGateExps => "ffn_gate_exps",
            Site::FfnUpExps => "ffn_up_exps",
            Site::FfnDownExps => "ffn_down_exps",
            Site::Output => return "output.weight".into(),
        };
        format!("blk.{il}.{short}.weight")
    }
}

/// Input rows of one matrix multiplication.
#[derive(Clone, Copy, Debug)]
pub struct MatmulInput<'x> {
    /// Layer (0 for `Output`).
    pub il: usize,
    pub site: Site,
    /// The expert, for expert matrices.
    pub expert: Option<usize>,
    /// [n_rows, n_cols]: one row per token multiplied (for an expert, its routed tokens only).
    pub rows: &'x [f32],
    pub n_cols: usize,
}

/// The observer the forward pass reports to, or none.
pub struct Hook<'o> {
    f: Option<&'o mut dyn FnMut(&MatmulInput)>,
}

impl std::fmt::Debug for Hook<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook")
            .field("on", &self.f.is_some())
            .finish()
    }
}

impl<'o> Hook<'o> {
    /// No observer.
    pub fn none() -> Self {
        Hook { f: None }
    }

    /// Reports every matmul input to `f`.
    pub fn new(f: &'o mut dyn FnMut(&MatmulInput)) -> Self {
        Hook { f: Some(f) }
    }

    pub fn is_on(&self) -> bool {
        self.f.is_some()
    }

    /// Reports `rows` [.., n_cols], the input of the matrix at `site` in layer `il`.
    #[inline]
    pub fn see(
        &mut self,
        il: usize,
        site: Site,
        expert: Option<usize>,
        rows: &[f32],
        n_cols: usize,
    ) {
        if let Some(f) = self.f.as_mut() {
            f(&MatmulInput {
                il,
                site,
                expert,
                rows,
                n_cols,
            });
        }
    }
}
