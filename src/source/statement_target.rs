//! What a statement from the binlog is about: which database or tables a
//! DDL statement touches (for filters), and statements that are never
//! replicated (account management, maintenance).
//!
//! This is a small tokenizer, not a SQL parser: it reads the head of the
//! statement far enough to name the objects. A statement it cannot read
//! is judged by its default database.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Database(String),
    /// `(database, table)`; the database is the default one when the
    /// statement does not qualify the name.
    Tables(Vec<(Option<String>, String)>),
    /// Accounts, privileges, FLUSH, ANALYZE...: not schema or data changes,
    /// and they live in the server's own schema.
    NotReplicated(&'static str),
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Punct(char),
}

fn tokens(sql: &str, limit: usize) -> Vec<Token> {
    let mut out = Vec::new();
    let c: Vec<char> = sql.chars().collect();
    let mut i = 0;
    while i < c.len() && out.len() < limit {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && c.get(i + 1) == Some(&'*') {
            let executable = c.get(i + 2) == Some(&'!');
            if executable {
                // `/*!40101 ... */` is executed by MySQL: read its inside.
                i += 3;
                while i < c.len() && c[i].is_ascii_digit() {
                    i += 1;
                }
                continue;
            }
            i += 2;
            while i + 1 < c.len() && !(c[i] == '*' && c[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if ch == '*' && c.get(i + 1) == Some(&'/') {
            i += 2;
        } else if ch == '#' || (ch == '-' && c.get(i + 1) == Some(&'-')) {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '`' {
            let mut s = String::new();
            i += 1;
            while i < c.len() {
                if c[i] == '`' {
                    if c.get(i + 1) == Some(&'`') {
                        s.push('`');
                        i += 2;
                        continue;
                    }
                    break;
                }
                s.push(c[i]);
                i += 1;
            }
            i += 1;
            out.push(Token::Quoted(s));
        } else if ch.is_alphanumeric() || ch == '_' || ch == '$' {
            let mut s = String::new();
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == '$') {
                s.push(c[i]);
                i += 1;
            }
            out.push(Token::Word(s));
        } else {
            out.push(Token::Punct(ch));
            i += 1;
        }
    }
    out
}

struct Cursor {
    t: Vec<Token>,
    i: usize,
}

impl Cursor {
    fn kw(&self, k: &str) -> bool {
        matches!(self.t.get(self.i), Some(Token::Word(w)) if w.eq_ignore_ascii_case(k))
    }
    fn eat(&mut self, k: &str) -> bool {
        let yes = self.kw(k);
        if yes {
            self.i += 1;
        }
        yes
    }
    fn eat_seq(&mut self, ks: &[&str]) -> bool {
        let save = self.i;
        for k in ks {
            if !self.eat(k) {
                self.i = save;
                return false;
            }
        }
        true
    }
    fn punct(&mut self, p: char) -> bool {
        let yes = matches!(self.t.get(self.i), Some(Token::Punct(c)) if *c == p);
        if yes {
            self.i += 1;
        }
        yes
    }
    fn ident(&mut self) -> Option<String> {
        match self.t.get(self.i) {
            Some(Token::Word(w)) | Some(Token::Quoted(w)) => {
                self.i += 1;
                Some(w.clone())
            }
            _ => None,
        }
    }
    /// `name` or `db.name`.
    fn qualified(&mut self) -> Option<(Option<String>, String)> {
        let first = self.ident()?;
        if self.punct('.') {
            let second = self.ident()?;
            Some((Some(first), second))
        } else {
            Some((None, first))
        }
    }
    fn list(&mut self) -> Vec<(Option<String>, String)> {
        let mut out = Vec::new();
        while let Some(q) = self.qualified() {
            out.push(q);
            if !self.punct(',') {
                break;
            }
        }
        out
    }
    /// Skips `DEFINER = user@host`, `ALGORITHM = x`, `SQL SECURITY x`.
    fn skip_view_options(&mut self) {
        loop {
            if self.eat("ALGORITHM") || self.eat("DEFINER") {
                self.punct('=');
                self.ident();
                if self.punct('@') {
                    self.ident();
                }
                // `'user'@'host'` arrives as punctuation and words; skip to
                // the next keyword we know.
                while !(self.kw("SQL")
                    || self.kw("VIEW")
                    || self.kw("ALGORITHM")
                    || self.i >= self.t.len())
                {
                    self.i += 1;
                }
            } else if self.eat("SQL") {
                self.eat("SECURITY");
                self.ident();
            } else {
                return;
            }
        }
    }
}

/// What `sql` changes, as far as filtering needs to know.
pub fn target(sql: &str) -> Target {
    let mut c = Cursor {
        t: tokens(sql, 400),
        i: 0,
    };
    for (kw, why) in [
        ("GRANT", "account management"),
        ("REVOKE", "account management"),
        ("FLUSH", "server maintenance"),
        ("ANALYZE", "table maintenance"),
        ("OPTIMIZE", "table maintenance"),
        ("REPAIR", "table maintenance"),
        ("INSTALL", "plugin management"),
        ("UNINSTALL", "plugin management"),
    ] {
        if c.kw(kw) {
            return Target::NotReplicated(why);
        }
    }
    let create = c.eat("CREATE");
    let drop = !create && c.eat("DROP");
    let alter = !create && !drop && c.eat("ALTER");
    if create || drop || alter {
        if c.kw("USER") || c.kw("ROLE") {
            return Target::NotReplicated("account management");
        }
        if c.eat("DATABASE") || c.eat("SCHEMA") {
            c.eat_seq(&["IF", "NOT", "EXISTS"]);
            c.eat_seq(&["IF", "EXISTS"]);
            return c.ident().map(Target::Database).unwrap_or(Target::Unknown);
        }
        c.eat_seq(&["OR", "REPLACE"]);
        c.eat("ONLINE");
        c.eat("IGNORE");
        c.eat("TEMPORARY");
        c.skip_view_options();
        if c.eat("TABLE") || c.eat("VIEW") || c.eat("SEQUENCE") {
            c.eat_seq(&["IF", "NOT", "EXISTS"]);
            c.eat_seq(&["IF", "EXISTS"]);
            let names = if drop {
                c.list()
            } else {
                c.qualified().into_iter().collect()
            };
            return if names.is_empty() {
                Target::Unknown
            } else {
                Target::Tables(names)
            };
        }
        c.eat("UNIQUE");
        c.eat("FULLTEXT");
        c.eat("SPATIAL");
        if c.eat("INDEX") {
            c.eat_seq(&["IF", "NOT", "EXISTS"]);
            c.eat_seq(&["IF", "EXISTS"]);
            c.ident();
            while c.i < c.t.len() && !c.kw("ON") {
                c.i += 1;
            }
            if c.eat("ON") {
                if let Some(q) = c.qualified() {
                    return Target::Tables(vec![q]);
                }
            }
            return Target::Unknown;
        }
        if c.kw("TRIGGER") || c.kw("PROCEDURE") || c.kw("FUNCTION") || c.kw("EVENT") {
            return Target::Unknown;
        }
        return Target::Unknown;
    }
    if c.eat("RENAME") {
        if c.kw("USER") {
            return Target::NotReplicated("account management");
        }
        c.eat("TABLE");
        let mut names = Vec::new();
        while let Some(from) = c.qualified() {
            names.push(from);
            if c.eat("TO") {
                if let Some(to) = c.qualified() {
                    names.push(to);
                }
            }
            if !c.punct(',') {
                break;
            }
        }
        return if names.is_empty() {
            Target::Unknown
        } else {
            Target::Tables(names)
        };
    }
    if c.eat("TRUNCATE") {
        c.eat("TABLE");
        return c
            .qualified()
            .map(|q| Target::Tables(vec![q]))
            .unwrap_or(Target::Unknown);
    }
    if c.eat("SET") && c.kw("PASSWORD") {
        return Target::NotReplicated("account management");
    }
    Target::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(db: Option<&str>, n: &str) -> (Option<String>, String) {
        (db.map(str::to_string), n.to_string())
    }

    #[test]
    fn names_the_objects_of_ddl() {
        assert_eq!(
            target("CREATE DATABASE IF NOT EXISTS `sh op`"),
            Target::Database("sh op".into())
        );
        assert_eq!(target("drop schema x"), Target::Database("x".into()));
        assert_eq!(
            target("ALTER DATABASE d CHARACTER SET utf8mb4"),
            Target::Database("d".into())
        );
        assert_eq!(
            target("CREATE TABLE d.t (a INT)"),
            Target::Tables(vec![t(Some("d"), "t")])
        );
        assert_eq!(
            target("create table if not exists t like u"),
            Target::Tables(vec![t(None, "t")])
        );
        assert_eq!(
            target("DROP TABLE IF EXISTS `a`, d.`b``c` /* generated by server */"),
            Target::Tables(vec![t(None, "a"), t(Some("d"), "b`c")])
        );
        assert_eq!(
            target("ALTER ONLINE TABLE t ADD c INT"),
            Target::Tables(vec![t(None, "t")])
        );
        assert_eq!(
            target("RENAME TABLE a TO b, d.c TO e.f"),
            Target::Tables(vec![
                t(None, "a"),
                t(None, "b"),
                t(Some("d"), "c"),
                t(Some("e"), "f")
            ])
        );
        assert_eq!(
            target("TRUNCATE TABLE d.t"),
            Target::Tables(vec![t(Some("d"), "t")])
        );
        assert_eq!(
            target("CREATE UNIQUE INDEX i ON d.t (a)"),
            Target::Tables(vec![t(Some("d"), "t")])
        );
        assert_eq!(
            target("DROP INDEX i ON t"),
            Target::Tables(vec![t(None, "t")])
        );
        assert_eq!(
            target("CREATE ALGORITHM=UNDEFINED DEFINER=`root`@`localhost` SQL SECURITY DEFINER VIEW `v` AS select 1"),
            Target::Tables(vec![t(None, "v")])
        );
        assert_eq!(
            target("CREATE OR REPLACE VIEW d.v AS SELECT 1"),
            Target::Tables(vec![t(Some("d"), "v")])
        );
        assert_eq!(
            target("DROP VIEW IF EXISTS v1, v2"),
            Target::Tables(vec![t(None, "v1"), t(None, "v2")])
        );
        assert!(matches!(
            target("GRANT SELECT ON *.* TO x"),
            Target::NotReplicated(_)
        ));
        assert!(matches!(
            target("CREATE USER 'a'@'%'"),
            Target::NotReplicated(_)
        ));
        assert!(matches!(
            target("FLUSH PRIVILEGES"),
            Target::NotReplicated(_)
        ));
        assert_eq!(
            target("CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET @a=1"),
            Target::Unknown
        );
    }
}
