//! The expert pager: budget respected, chosen experts never released, the least used released
//! first, counters right — and paging never changes what the model computes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

#[path = "common/tiny.rs"]
mod tiny;

use smoe::gguf::GgufFile;
use smoe::model::pager::{expert_budget, Pager};
use smoe::model::{CacheType, LoadOptions, MemBudget, Mixtral};
use tiny::{all_logits, tiny_gguf};

/// The model without a pager of its own (the tests build theirs).
fn unpaged(file: &GgufFile) -> Mixtral<'_> {
    let opts = LoadOptions {
        mem_budget: MemBudget::Off,
        ..Default::default()
    };
    Mixtral::load_with(file, &opts).unwrap()
}

fn mask(experts: &[usize]) -> Vec<bool> {
    (0..8).map(|e| experts.contains(&e)).collect()
}

#[test]
fn cache_stays_within_budget_and_releases_the_least_used() {
    let file = GgufFile::open(tiny_gguf("q8_0")).unwrap();
    let model = unpaged(&file);
    assert!(model.pager.is_none());
    let one = {
        let e = &model.w.layers[0].experts[0];
        (e.gate.data.len() + e.up.data.len() + e.down.data.len()) as u64
    };
    let pager = Pager::new(&file, &model.w, 3 * one);
    assert_eq!(pager.expert_bytes(0), one);

    pager.use_experts(0, &mask(&[0, 1]));
    pager.use_experts(0, &mask(&[0, 1]));
    let s = pager.stats();
    assert_eq!((s.misses, s.hits, s.released), (2, 2, 0));

    // Expert 5 of layer 0 is used once; experts 0 and 1 twice. Two new experts in layer 1 need room
    // for four: the least used (5) goes first; the chosen ones stay.
    pager.use_experts(0, &mask(&[5]));
    pager.use_experts(1, &mask(&[2, 3]));
    let s = pager.stats();
    assert_eq!((s.misses, s.hits, s.released), (5, 2, 2));
    assert!(pager.resident_bytes() <= 3 * one);
    pager.use_experts(1, &mask(&[2, 3]));
    assert_eq!(pager.stats().hits, 4, "layer 1's experts were kept");
    pager.use_experts(0, &mask(&[5]));
    assert_eq!(
        pager.stats().misses,
        6,
        "layer 0's expert 5 was released first"
    );

    // Prefetch counts separately and also stays within the budget.
    pager.prefetch(1, &mask(&[6, 7]));
    assert_eq!(pager.stats().prefetched, 2);
    assert!(pager.resident_bytes() <= 3 * one);
}

#[test]
fn paging_never_changes_the_logits() {
    let file = GgufFile::open(tiny_gguf("q8_0")).unwrap();
    let plain = Mixtral::load_with(
        &file,
        &LoadOptions {
            mem_budget: MemBudget::Off,
            ..Default::default()
        },
    )
    .unwrap();
    let ids = [1u32, 415, 5565, 302, 4843, 349, 28705, 13, 1200, 9];
    let want = all_logits(&plain, &ids, CacheType::F16);
    // A budget far below the file: every layer pages experts in and out.
    let paged = Mixtral::load_with(
        &file,
        &LoadOptions {
            mem_budget: MemBudget::Bytes(64 << 10),
            mlock_dense: true,
            reserve: 0,
        },
    )
    .unwrap();
    let pager = paged
        .pager
        .as_ref()
        .expect("the file does not fit 64 KiB, so experts are paged");
    assert_eq!(all_logits(&paged, &ids, CacheType::F16), want);
    let s = pager.stats();
    assert!(s.misses > 0 && s.prefetched > 0, "{s:?}");
}

#[test]
fn budget_is_only_set_when_the_file_does_not_fit() {
    assert_eq!(expert_budget(1000, 100, 5000, 500), None);
    // 4000 usable of a 5000 limit, minus dense weights and a tenth of the limit.
    assert_eq!(expert_budget(9000, 1000, 5000, 1000), Some(2500));
    assert_eq!(expert_budget(9000, 9000, 5000, 1000), Some(0));
}

#[test]
fn predictions_are_read_ahead_only_while_they_are_right() {
    let file = GgufFile::open(tiny_gguf("q8_0")).unwrap();
    let model = unpaged(&file);
    let one = model.w.layers[0].experts[0].gate.data.len() as u64 * 3;
    // Room for three experts; six take turns, so each prediction names a missing expert.
    let wrong = Pager::new(&file, &model.w, 3 * one);
    let right = Pager::new(&file, &model.w, 3 * one);
    for i in 0..30 {
        let guess = mask(&[2 + i % 6]);
        wrong.prefetch(1, &guess);
        wrong.use_experts(1, &mask(&[0, 1]));
        right.prefetch(1, &guess);
        right.use_experts(1, &guess);
    }
    let (w, r) = (wrong.stats(), right.stats());
    assert_eq!((w.predicted, w.predicted_right), (30, 0));
    assert_eq!((r.predicted, r.predicted_right), (30, 30));
    // Wrong guesses stop being read once a few have been scored; right ones are always read.
    assert!(w.prefetched < 10, "{w:?}"); // the optimistic start: until ~8 are scored
    assert_eq!(r.prefetched, 30, "{r:?}");
}

/// The background adviser takes slices of its file's map only, applies them in order, and holds
/// the map itself: queueing hints after the file is dropped is harmless, and the file's bytes
/// read the same after pages were released and read back.
#[test]
fn background_hints_take_only_the_files_own_pages_and_outlive_it() {
    use smoe::gguf::PageHint;
    let path = tiny_gguf("q8_0");
    let file = GgufFile::open(&path).unwrap();
    let before = file.bytes().to_vec();
    let adviser = file.background_adviser().unwrap();
    let all = file.bytes();
    let page = 4096.min(all.len() / 4);
    assert!(adviser.advise(&all[page..3 * page], PageHint::Release));
    assert!(adviser.advise(&all[page..3 * page], PageHint::WillNeed));
    // Not the map's: a copy, an empty slice, a range past the end.
    assert!(!adviser.advise(&before[..page], PageHint::WillNeed));
    assert!(!adviser.advise(&all[..0], PageHint::WillNeed));
    // Release needs whole pages: a sub-page slice covers none.
    assert!(!adviser.advise(&all[page + 1..page + 2], PageHint::Release));
    drop(adviser); // waits for the hints
    assert_eq!(file.bytes(), &before[..]);
    let adviser = file.background_adviser().unwrap();
    let range = &file.bytes()[..2 * page];
    let (ptr, len) = (range.as_ptr(), range.len());
    drop(file);
    // The thread's own reference keeps the mapping: hints after the file is gone cannot touch
    // memory reused by something else (`advise` only compares addresses).
    // SAFETY: the range is still mapped, read-only and unchanged: the adviser holds the map.
    let still_mapped = unsafe { std::slice::from_raw_parts(ptr, len) };
    assert!(adviser.advise(still_mapped, PageHint::Release));
    // Reading it now (the release may be applied meanwhile: the pages fault back in) gives the
    // file's bytes: had the map gone with the file, this read would fault.
    assert_eq!(still_mapped, &before[..len]);
    drop(adviser);
}
