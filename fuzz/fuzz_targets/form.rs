#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ropc_core::form::Form::parse(data, &ropc_core::Limits::default());
});
