#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ropc_core_fuzz::token_request(data);
});
