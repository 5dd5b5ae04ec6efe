#![no_main]
//! Arbitrary bytes as a binlog file fed event by event to rowcast's
//! `Decoder`. See `rowcast_fuzz::binlog`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rowcast_fuzz::binlog(data);
});
