//! Every temporal type at every fractional precision replicates as the
//! primary stores it: edge values, both signs of TIME and generated values
//! are written on the primary, replicated live (insert, update, delete) and
//! to a freshly seeded slave, and the rows are compared by SELECT on both
//! sides. A wrong field anywhere (TIME(1)'s negative fractions once came out
//! as 00:00:00.0) shows up as a differing row.

mod support;

use support::*;

/// A small deterministic generator: the same rows on every run, so a
/// failure can be reproduced, but not values anyone picked by hand.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// `digits` fractional digits of `micros` (e.g. 3 digits of 123456 is
/// ".123"), or nothing for precision 0.
fn fraction(micros: u64, digits: u32) -> String {
    if digits == 0 {
        return String::new();
    }
    let f = micros / 10u64.pow(6 - digits);
    format!(".{f:0width$}", width = digits as usize)
}

fn table(p: u32) -> String {
    format!("fid.t{p}")
}

/// One row of (DATE, TIME(p), DATETIME(p), TIMESTAMP(p), YEAR) literals.
type Row = [String; 5];

fn edge_rows(p: u32) -> Vec<Row> {
    let nines = fraction(999_999, p);
    let tiny = if p == 0 {
        String::new()
    } else {
        format!(".{:0>width$}", 1, width = p as usize)
    };
    let q = |s: String| format!("'{s}'");
    vec![
        [
            q("1000-01-01".into()),
            q(format!("-838:59:59{nines}")),
            q("1000-01-01 00:00:00".into()),
            q(format!("1970-01-01 00:00:01{tiny}")),
            q("1901".into()),
        ],
        [
            q("9999-12-31".into()),
            q(format!("838:59:59{nines}")),
            q(format!("9999-12-31 23:59:59{nines}")),
            q(format!("2038-01-19 03:14:07{nines}")),
            q("2155".into()),
        ],
        [
            q("0000-00-00".into()),
            q("00:00:00".into()),
            q("0000-00-00 00:00:00".into()),
            q("0000-00-00 00:00:00".into()),
            q("0000".into()),
        ],
        [
            q("2024-02-29".into()),
            q(format!("-00:00:00{tiny}")),
            q(format!("2024-02-29 12:34:56{tiny}")),
            q(format!("2024-02-29 12:34:56{nines}")),
            q("2000".into()),
        ],
        [
            q("2000-01-01".into()),
            q(format!("-23:45:56{}", fraction(700_000, p))),
            q(format!("1999-12-31 23:59:59{nines}")),
            q(format!("1999-12-31 23:59:59{tiny}")),
            q("1999".into()),
        ],
        [
            q("1999-12-31".into()),
            q(format!("-00:00:01{nines}")),
            q("2000-01-01 00:00:00".into()),
            q("2000-01-01 00:00:00".into()),
            q("1970".into()),
        ],
        [
            q("2001-01-01".into()),
            q(format!("-12:00:00{}", fraction(500_000, p))),
            q(format!("2001-01-01 00:00:00{tiny}")),
            q(format!("2001-01-01 00:00:00{tiny}")),
            "NULL".into(),
        ],
        [
            "NULL".into(),
            "NULL".into(),
            "NULL".into(),
            "NULL".into(),
            "NULL".into(),
        ],
    ]
}

fn generated_rows(p: u32, rng: &mut Lcg, n: usize) -> Vec<Row> {
    (0..n)
        .map(|_| {
            let date = format!(
                "{:04}-{:02}-{:02}",
                1000 + rng.next(9000),
                1 + rng.next(12),
                1 + rng.next(28)
            );
            let sign = if rng.next(2) == 0 { "-" } else { "" };
            let time = format!(
                "{sign}{}:{:02}:{:02}{}",
                rng.next(839),
                rng.next(60),
                rng.next(60),
                fraction(rng.next(1_000_000), p)
            );
            let clock = |rng: &mut Lcg| {
                format!(
                    "{:02}:{:02}:{:02}{}",
                    rng.next(24),
                    rng.next(60),
                    rng.next(60),
                    fraction(rng.next(1_000_000), p)
                )
            };
            let datetime = format!("{date} {}", clock(rng));
            let timestamp = format!(
                "{:04}-{:02}-{:02} {}",
                1971 + rng.next(66),
                1 + rng.next(12),
                1 + rng.next(28),
                clock(rng)
            );
            let year = 1901 + rng.next(255);
            [
                format!("'{date}'"),
                format!("'{time}'"),
                format!("'{datetime}'"),
                format!("'{timestamp}'"),
                format!("'{year}'"),
            ]
        })
        .collect()
}

fn insert(p: u32, first_id: usize, rows: &[Row]) -> String {
    let values: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| format!("({}, {})", first_id + i, r.join(", ")))
        .collect();
    format!("INSERT INTO {} VALUES {};\n", table(p), values.join(",\n"))
}

/// Sessions on the primary: a lax sql_mode so zero dates are stored, UTC
/// so TIMESTAMP literals mean the same on every run.
const SESSION: &str = "SET SESSION sql_mode = ''; SET SESSION time_zone = '+00:00';\n";

#[test]
fn temporal_types_at_every_precision_replicate_as_stored() {
    let primary = MariaDb::primary();
    let replica = MariaDb::start_with(&["--default-time-zone=-08:00"]);
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, data.path(), &listen);
    let _live = Rowcast::slave(&listen, &replica, "live");

    let mut schema = String::from(SESSION);
    schema.push_str("CREATE DATABASE fid;\n");
    for p in 0..=6 {
        schema.push_str(&format!(
            "CREATE TABLE {} (id INT PRIMARY KEY, d DATE, t TIME({p}), dt DATETIME({p}), \
             ts TIMESTAMP({p}) NULL DEFAULT NULL, y YEAR);\n",
            table(p)
        ));
    }
    primary.sql(&schema);

    let mut rng = Lcg(15);
    for p in 0..=6 {
        let edges = edge_rows(p);
        let generated = generated_rows(p, &mut rng, 200);
        let mut sql = String::from(SESSION);
        sql.push_str(&insert(p, 1, &edges));
        sql.push_str(&insert(p, 1000, &generated));
        primary.sql(&sql);
    }
    // Before-images too: updates move every value to another generated
    // one (and negative TIMEs to their opposite), deletes remove some.
    for p in 0..=6 {
        let mut sql = String::from(SESSION);
        sql.push_str(&format!(
            "UPDATE {t} SET t = -t, dt = dt + INTERVAL 1 SECOND WHERE id % 3 = 0;\n\
             UPDATE {t} SET ts = NULL, y = NULL WHERE id % 7 = 1;\n\
             DELETE FROM {t} WHERE id % 5 = 2;\n",
            t = table(p)
        ));
        primary.sql(&sql);
    }
    wait_caught_up(&primary, &replica, "live");

    // The primary really stored the edges: the test compares something.
    assert_eq!(
        primary.sql("SELECT t FROM fid.t1 WHERE id = 5").trim(),
        "-23:45:56.7"
    );
    assert_eq!(
        primary.sql("SELECT t FROM fid.t2 WHERE id = 1").trim(),
        "-838:59:59.99"
    );
    for p in 0..=6 {
        assert_same_table(&primary, &replica, &table(p));
    }

    // A slave started now is seeded by a snapshot of the same rows.
    let seeded_db = MariaDb::start_with(&["--default-time-zone=+09:00"]);
    let _seeded = Rowcast::slave(&listen, &seeded_db, "seeded");
    assert!(
        wait_until(CONVERGE, || !slave_position(&seeded_db, "seeded")
            .is_empty()),
        "the seeded slave never checkpointed"
    );
    wait_caught_up(&primary, &seeded_db, "seeded");
    for p in 0..=6 {
        assert_same_table(&primary, &seeded_db, &table(p));
    }
}
