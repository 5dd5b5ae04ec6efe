#![no_main]
//! Arbitrary bytes as a stream a rowcast master or slave reads: frame
//! splitting with the reader's limits, then message decoding. See
//! `rowcast_fuzz::frames`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rowcast_fuzz::frames(data);
});
