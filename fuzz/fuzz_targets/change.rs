#![no_main]
//! Arbitrary bytes as a `Transaction` and as a change-log record, with
//! round trips of whatever decodes. See `rowcast_fuzz::change`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rowcast_fuzz::change(data);
});
