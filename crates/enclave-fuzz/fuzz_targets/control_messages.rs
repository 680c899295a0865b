//! libFuzzer entry point for [`enclave_fuzz::control_messages`]; the checks live in the library.
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| enclave_fuzz::control_messages(data));
