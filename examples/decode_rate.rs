//! The master's decode alone, beside `parse_rate.rs`'s anchor in
//! `scripts/bench decode`: the same binlog bytes read from memory on one
//! thread, every event fed to rowcast's `Decoder` and every transaction it
//! gives encoded into the change format, without the network, the primary
//! or the log's disk. Under `valgrind --tool=callgrind` it counts the
//! instructions of a decode change exactly, where the timed benchmark on a
//! shared machine moves by a fifth from run to run.
//!
//!   cargo run --release --example decode_rate -- FILE START END [PASSES]
//!
//! prints the transactions decoded and the median rate of PASSES passes
//! (default 3) over the events in [START, END).

use std::time::Instant;

use mysql_common::binlog::consts::BinlogVersion;
use mysql_common::binlog::EventStreamReader;
use rowcast::log::codec;
use rowcast::source::decode::Decoder;

mod binlog_range;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (file, start, end, passes) = match &args[..] {
        [_, file, start, end] => (file, start, end, 3),
        [_, file, start, end, passes] => (file, start, end, passes.parse()?),
        _ => return Err("usage: decode_rate FILE START END [PASSES]".into()),
    };
    let range = binlog_range::BinlogRange::load(file, start, end)?;
    let name = std::path::Path::new(file)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (mut rates, mut txns) = (Vec::new(), 0);
    let mut buf = Vec::new();
    for _ in 0..passes.max(1) {
        let mut reader = EventStreamReader::new(BinlogVersion::Version4);
        let mut decoder = Decoder::new(name.clone());
        // The FORMAT_DESCRIPTION at offset 4: how the rest is checksummed,
        // and what the decoder keeps for the replica's row-event applier.
        let format = reader
            .read(range.event_at(4))?
            .ok_or("no FORMAT_DESCRIPTION event at offset 4")?;
        decoder.feed(&format)?;
        let t = Instant::now();
        let (mut at, mut n) = (range.start, 0);
        while at < range.end {
            let bytes = range.event_at(at);
            let event = reader.read(bytes)?.ok_or("a short event")?;
            if let Some(txn) = decoder.feed(&event)? {
                buf.clear();
                codec::encode_into(&txn, &mut buf)?;
                std::hint::black_box(&buf);
                n += 1;
            }
            at += bytes.len();
        }
        rates.push(range.megabytes() / t.elapsed().as_secs_f64());
        txns = n;
    }
    rates.sort_by(f64::total_cmp);
    println!("{txns} transactions, {:.1} MB/s", rates[rates.len() / 2]);
    Ok(())
}
