//! TOML text → [`FileConfig`], reporting every type problem by its dotted key.
//!
//! serde stops at the first error, so the text is parsed once into a `toml::Table` (a
//! syntax error can only be reported once, with its line), then deserialized again and
//! again: each failure is recorded by the dotted path `serde_path_to_error` gives
//! (`token.session_ttl`, `routes[2].carrier`), the offending key is taken out, and the rest
//! is tried again, until it deserializes. What is left is checked as usual, so one run
//! reports every mistake.

use serde_path_to_error::Segment;

use super::file::FileConfig;

/// More problems than this in one file are not worth listing one by one.
const MAX_PROBLEMS: usize = 100;

/// The file as deserialized after taking out every key with a type problem.
pub(super) struct Parsed {
    /// What deserialized.
    pub file: FileConfig,
    /// The file as written (for telling what a reload changed).
    pub table: toml::Table,
    /// One line per type problem, `dotted.key: what is wrong`.
    pub problems: Vec<String>,
    /// The dotted keys taken out: later checks' complaints about them are not news.
    pub removed: Vec<String>,
}

/// Parses `text`.
///
/// # Errors
/// A TOML syntax error, described with its line and table.
pub(super) fn parse(text: &str) -> Result<Parsed, String> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| super::describe_toml_error(text, &e))?;
    let mut value = toml::Value::Table(table.clone());
    let mut problems = Vec::new();
    let mut removed = Vec::new();
    loop {
        match serde_path_to_error::deserialize::<_, FileConfig>(value.clone()) {
            Ok(file) => {
                return Ok(Parsed {
                    file,
                    table,
                    problems,
                    removed,
                })
            }
            Err(e) => {
                let mut segments: Vec<Segment> = e.path().iter().cloned().collect();
                let message = e.inner().message().trim().to_owned();
                if let Some(key) = unknown_field(&message) {
                    if !matches!(segments.last(), Some(Segment::Map { key: k }) if k == key) {
                        segments.push(Segment::Map {
                            key: key.to_owned(),
                        });
                    }
                }
                let dotted = dotted(&segments);
                problems.push(format!("{dotted}: {message}"));
                removed.push(dotted);
                if problems.len() >= MAX_PROBLEMS || !remove(&mut value, &segments) {
                    // Nothing more can be learnt: report what was found.
                    return Ok(Parsed {
                        file: FileConfig::default(),
                        table,
                        problems,
                        removed,
                    });
                }
            }
        }
    }
}

/// The key an "unknown field `k`, expected …" message names.
fn unknown_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("unknown field `")?
        .split('`')
        .next()
        .filter(|k| !k.is_empty())
}

/// `token.keys[1].id`: the path as the operator writes it.
fn dotted(segments: &[Segment]) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Enum { variant } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(variant);
            }
            Segment::Unknown => out.push_str(".?"),
        }
    }
    if out.is_empty() {
        "(file)".to_owned()
    } else {
        out
    }
}

/// Takes the value at `segments` out of `value`; `false` when there is no such value.
fn remove(value: &mut toml::Value, segments: &[Segment]) -> bool {
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut at = value;
    for segment in parents {
        let next = match (segment, at) {
            (Segment::Map { key }, toml::Value::Table(t)) => t.get_mut(key.as_str()),
            (Segment::Seq { index }, toml::Value::Array(a)) => a.get_mut(*index),
            _ => None,
        };
        match next {
            Some(next) => at = next,
            None => return false,
        }
    }
    match (last, at) {
        (Segment::Map { key }, toml::Value::Table(t)) => t.remove(key.as_str()).is_some(),
        (Segment::Seq { index }, toml::Value::Array(a)) if *index < a.len() => {
            a.remove(*index);
            true
        }
        _ => false,
    }
}
