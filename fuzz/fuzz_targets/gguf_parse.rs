//! Arbitrary bytes into the GGUF parser: it must return Ok or Err, never panic, and on Ok every
//! tensor view must be in bounds and every metadata value renderable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smoe::gguf::{inspect, GgufBytes};

fuzz_target!(|data: &[u8]| {
    let Ok(f) = GgufBytes::parse(data, "fuzz.gguf") else {
        return;
    };
    let mut sum = 0u64;
    for t in f.tensors() {
        let view = f.tensor_data(t);
        assert_eq!(view.len() as u64, t.n_bytes());
        assert!(f.tensor(t.name()).is_some());
        sum = view.iter().fold(sum, |s, &b| s.wrapping_add(u64::from(b)));
    }
    for (k, v) in f.metadata().iter() {
        assert!(f.get(k).is_some());
        std::hint::black_box(inspect::json_value(v));
        std::hint::black_box(v.display_summary(inspect::MAX_ARRAY_ITEMS));
    }
    std::hint::black_box(serde_json::to_vec(&inspect::InspectJson(f.header())).ok());
    std::hint::black_box(inspect::render_text(f.header()));
    std::hint::black_box(sum);
});
