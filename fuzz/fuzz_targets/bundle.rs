//! Offline bundle verification (`bitacora verify-bundle`): a bundle is a file anyone may
//! hand an auditor, so any bytes must give a clear error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bitacora_log::verify_bundle(data, None);
});
