//! The anchor of `scripts/bench decode`: how fast `mysql_common` alone
//! parses the same binlog bytes the master decodes (each event read, its
//! checksum checked and its body parsed; no rows turned into values), on
//! one thread from memory.
//!
//!   cargo run --release --example parse_rate -- FILE START END
//!
//! prints the median of three passes over the events in [START, END).

use std::time::Instant;

use mysql_common::binlog::consts::{BinlogChecksumAlg, BinlogVersion};
use mysql_common::binlog::EventStreamReader;

mod binlog_range;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, file, start, end] = &args[..] else {
        return Err("usage: parse_rate FILE START END".into());
    };
    let range = binlog_range::BinlogRange::load(file, start, end)?;
    let mut rates = Vec::new();
    let mut events = 0;
    for _ in 0..3 {
        // The FORMAT_DESCRIPTION at offset 4 says how the rest is checksummed.
        let mut reader = EventStreamReader::new(BinlogVersion::Version4);
        reader.read(range.event_at(4))?;
        let t = Instant::now();
        let (mut at, mut n) = (range.start, 0);
        while at < range.end {
            let bytes = range.event_at(at);
            let event = reader.read(bytes)?.ok_or("a short event")?;
            if let (Some(stored), Ok(Some(alg))) =
                (event.checksum(), event.footer().get_checksum_alg())
            {
                if alg == BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32
                    && event.calc_checksum(alg) != u32::from_le_bytes(stored)
                {
                    return Err(format!("bad checksum at {at}").into());
                }
            }
            let _ = std::hint::black_box(event.read_data());
            at += bytes.len();
            n += 1;
        }
        rates.push(range.megabytes() / t.elapsed().as_secs_f64());
        events = n;
    }
    rates.sort_by(f64::total_cmp);
    println!("{events} events, {:.1} MB/s", rates[1]);
    Ok(())
}
