//! Compile-fail tests of `#[decoder_layer]` and `#[register_model]`: each case in tests/ui
//! must fail with our message at the offending token (the checked-in .stderr), and the
//! `pass` cases must compile and run.
//!
//! Regenerate the .stderr files after an intended change with
//! `TRYBUILD=overwrite cargo test -p trtllm-tests --test compiletest`, then read them.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/decoder_layer/*.rs");
    t.compile_fail("ui/register_model/*.rs");
    t.pass("ui/pass/*.rs");
}
