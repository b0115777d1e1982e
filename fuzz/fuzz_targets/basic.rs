#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ropc_core::basic::parse(data, &mut [0; ropc_core::basic::SCRATCH_LEN]);
});
