//! libFuzzer entry point for [`enclave_fuzz::event_parser`]; the checks live in the library.
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| enclave_fuzz::event_parser(data));
