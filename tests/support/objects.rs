//! Comparing every object of a database between a primary and its
//! replica: tables, views, sequences (with their state), triggers,
//! procedures, functions and events, as `SHOW CREATE ...` shows them with
//! their definer and session context.
//!
//! The one allowed difference is the replica's copy of an event: it is
//! `DISABLE ON SLAVE` (SLAVESIDE_DISABLED) whatever the primary's status,
//! as on a native replica, and it has never run there.

use super::MariaDb;

fn lit(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "\\'")
}

fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

fn names(db: &MariaDb, sql: &str) -> Vec<String> {
    db.sql(sql)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The names of `db`'s objects of one kind on `server`.
fn objects(server: &MariaDb, db: &str, kind: &str) -> Vec<String> {
    let db = lit(db);
    let q = match kind {
        "TABLE" => format!("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{db}' AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') ORDER BY 1"),
        "VIEW" => format!("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{db}' AND TABLE_TYPE = 'VIEW' ORDER BY 1"),
        "SEQUENCE" => format!("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{db}' AND TABLE_TYPE = 'SEQUENCE' ORDER BY 1"),
        "TRIGGER" => format!("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '{db}' ORDER BY 1"),
        "PROCEDURE" | "FUNCTION" => format!("SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '{db}' AND ROUTINE_TYPE = '{kind}' ORDER BY 1"),
        "EVENT" => format!("SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = '{db}' ORDER BY 1"),
        _ => unreachable!("{kind}"),
    };
    names(server, &q)
}

/// `SHOW CREATE <kind>` of one object, without what legitimately differs:
/// a trigger's creation time and an event's status clause.
fn show_create(server: &MariaDb, db: &str, kind: &str, name: &str) -> String {
    let out = server.sql(&format!("SHOW CREATE {kind} {}.{}", ident(db), ident(name)));
    let out = out.trim_end_matches('\n');
    match kind {
        // Trigger, sql_mode, statement, charset, collation, db collation, Created
        "TRIGGER" => out
            .rsplit_once('\t')
            .map_or(out, |(head, _)| head)
            .to_string(),
        "EVENT" => {
            let (head, body) = out.split_once(" DO ").unwrap_or((out, ""));
            let mut head = head.to_string();
            for status in [" DISABLE ON SLAVE", " ENABLE", " DISABLE"] {
                if let Some(at) = head.rfind(status) {
                    head.replace_range(at..at + status.len(), " <status>");
                    break;
                }
            }
            format!("{head} DO {body}")
        }
        _ => out.to_string(),
    }
}

/// Asserts that database `db` has the same objects, defined the same way,
/// on both servers, that sequences are in the same state, and that every
/// event on the replica is SLAVESIDE_DISABLED and has never run there.
pub fn assert_same_objects(primary: &MariaDb, replica: &MariaDb, db: &str) {
    assert_same_objects_renamed(primary, db, replica, db);
}

/// [`assert_same_objects`] for a database the replica keeps under another
/// name (`--rewrite-db db=on_replica`): the primary's definitions with
/// every `` `db`. `` and `db.` qualifier read as the replica's name.
pub fn assert_same_objects_renamed(
    primary: &MariaDb,
    db: &str,
    replica: &MariaDb,
    on_replica: &str,
) {
    let renamed = |text: String| -> String {
        if db == on_replica {
            return text;
        }
        text.replace(
            &format!("{}.", ident(db)),
            &format!("{}.", ident(on_replica)),
        )
        .replace(&format!(" {db}."), &format!(" {on_replica}."))
        .replace(&format!("({db}."), &format!("({on_replica}."))
        .replace(&format!("\"{db}\"."), &format!("\"{on_replica}\"."))
    };
    for kind in [
        "TABLE",
        "VIEW",
        "SEQUENCE",
        "TRIGGER",
        "PROCEDURE",
        "FUNCTION",
        "EVENT",
    ] {
        let list = objects(primary, db, kind);
        assert_eq!(
            list,
            objects(replica, on_replica, kind),
            "the {kind}s of `{db}` differ"
        );
        for name in &list {
            assert_eq!(
                renamed(show_create(primary, db, kind, name)),
                show_create(replica, on_replica, kind, name),
                "SHOW CREATE {kind} {db}.{name} differs"
            );
            if kind == "SEQUENCE" {
                let state = |d: &str| format!("SELECT * FROM {}.{}", ident(d), ident(name));
                assert_eq!(
                    primary.sql(&state(db)),
                    replica.sql(&state(on_replica)),
                    "the state of sequence {db}.{name} differs"
                );
            }
        }
    }
    // Several triggers of one kind run in the same order.
    let order = |d: &str| {
        format!(
            "SELECT EVENT_OBJECT_TABLE, EVENT_MANIPULATION, ACTION_TIMING, ACTION_ORDER, TRIGGER_NAME \
             FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '{}' ORDER BY 1, 2, 3, 4",
            lit(d)
        )
    };
    assert_eq!(
        primary.sql(&order(db)),
        replica.sql(&order(on_replica)),
        "trigger order in `{db}` differs"
    );
    let events = format!(
        "SELECT EVENT_NAME, STATUS, LAST_EXECUTED FROM information_schema.EVENTS \
         WHERE EVENT_SCHEMA = '{}' AND (STATUS <> 'SLAVESIDE_DISABLED' OR LAST_EXECUTED IS NOT NULL)",
        lit(on_replica)
    );
    assert_eq!(
        replica.sql(&events),
        "",
        "replica events of `{db}` must be SLAVESIDE_DISABLED and never run"
    );
}
