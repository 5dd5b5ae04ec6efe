//! The configuration file: a TOML file whose `[master]`, `[slave]`,
//! `[status]`, `[show]` and `[checksum]` sections hold the same settings as
//! the command-line flags (`data_dir = "/var/lib/rowcast"` is
//! `--data-dir /var/lib/rowcast`). Flags given on the command line win.
//!
//! It works by turning the file into flags placed before the user's own,
//! so clap validates both the same way and the help stays the one source
//! of truth for what a setting means.

use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("config file {path} is not valid TOML: {reason}")]
    Parse { path: String, reason: String },
    #[error("config file {path}: `{key}` must be a string, number, boolean or a list of those")]
    Value { path: String, key: String },
}

/// Flags that take a value and may come before the subcommand.
const GLOBAL_WITH_VALUE: &[&str] = &["--log-format", "--config"];

fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(p) = s.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
    }
    std::env::var_os("ROWCAST_CONFIG").map(PathBuf::from)
}

/// Index of the subcommand in `args`.
fn subcommand_index(args: &[OsString]) -> Option<usize> {
    let mut i = 1;
    while i < args.len() {
        let s = args[i].to_string_lossy();
        if GLOBAL_WITH_VALUE.contains(&s.as_ref()) {
            i += 2;
            continue;
        }
        if !s.starts_with('-') {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Returns `args` with the config file's settings for the subcommand
/// inserted as flags.
pub fn expand_args(args: Vec<OsString>) -> Result<Vec<OsString>, ConfigError> {
    let Some(path) = config_path(&args) else {
        return Ok(args);
    };
    let Some(sub) = subcommand_index(&args) else {
        return Ok(args);
    };
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Read {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Parse {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
    let name = args[sub].to_string_lossy().into_owned();
    let Some(toml::Value::Table(section)) = table.get(&name) else {
        return Ok(args);
    };
    let given: Vec<String> = args
        .iter()
        .map(|a| {
            a.to_string_lossy()
                .split('=')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    let mut extra: Vec<OsString> = Vec::new();
    for (key, value) in section {
        let flag = format!("--{}", key.replace('_', "-"));
        if given.contains(&flag) {
            continue;
        }
        let scalar = |v: &toml::Value| match v {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(i) => Some(i.to_string()),
            toml::Value::Float(f) => Some(f.to_string()),
            _ => None,
        };
        let bad = || ConfigError::Value {
            path: shown.clone(),
            key: key.clone(),
        };
        match value {
            toml::Value::Boolean(true) => extra.push(flag.into()),
            toml::Value::Boolean(false) => {}
            toml::Value::Array(items) => {
                for item in items {
                    extra.push(flag.clone().into());
                    extra.push(scalar(item).ok_or_else(bad)?.into());
                }
            }
            v => {
                extra.push(flag.into());
                extra.push(scalar(v).ok_or_else(bad)?.into());
            }
        }
    }
    let mut out = args[..=sub].to_vec();
    out.extend(extra);
    out.extend_from_slice(&args[sub + 1..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn file_settings_become_flags_and_the_command_line_wins() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rowcast.toml");
        std::fs::write(
            &p,
            "[master]\nsource = \"mysql://r@h:3306\"\nlisten = \"0.0.0.0:9999\"\ninclude = [\"a\", \"b.*\"]\nretain_mb = 5\n[slave]\nresnapshot = true\n",
        )
        .unwrap();
        let cfg = p.to_str().unwrap();
        let out = expand_args(os(&[
            "rowcast",
            "--config",
            cfg,
            "master",
            "--listen",
            "1.2.3.4:1",
        ]))
        .unwrap();
        let out: Vec<String> = out
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        let joined = out.join(" ");
        assert!(joined.contains("--source mysql://r@h:3306"), "{joined}");
        assert!(joined.contains("--include a --include b.*"), "{joined}");
        assert!(joined.contains("--retain-mb 5"), "{joined}");
        assert!(
            !joined.contains("0.0.0.0:9999"),
            "command line wins: {joined}"
        );
        let out = expand_args(os(&["rowcast", "--config", cfg, "slave"])).unwrap();
        assert_eq!(out.last().unwrap(), "--resnapshot");
        std::fs::write(&p, "[master\n").unwrap();
        assert!(matches!(
            expand_args(os(&["rowcast", "--config", cfg, "master"])),
            Err(ConfigError::Parse { .. })
        ));
    }
}
