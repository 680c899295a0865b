//! libFuzzer entry point for [`enclave_fuzz::http_request`]; the checks live in the library.
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| enclave_fuzz::http_request(data));
