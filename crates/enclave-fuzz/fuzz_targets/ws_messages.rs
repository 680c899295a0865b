//! libFuzzer entry point for [`enclave_fuzz::ws_messages`]; the checks live in the library.
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| enclave_fuzz::ws_messages(data));
