//! The first validation pass: walks the loose value tree (file and
//! environment merged) against the [schema](super::schema), collecting
//! every unknown key, missing key, bad value and dangling reference,
//! before serde sees the tree.

use figment::value::{Dict, Num, Value};

use super::duration;
use super::error::Problem;
use super::schema::{Field, Kind, ROOT};

/// Every problem in `root`; empty if it fits the schema.
pub(crate) fn check(root: &Value) -> Vec<Problem> {
    let mut walk = Walk::default();
    match root {
        Value::Dict(_, dict) => {
            walk.table("", dict, ROOT);
            walk.resolve(dict);
        }
        other => walk.problem(
            "",
            format!("expected a table of sections, got {}", show(other)),
        ),
    }
    walk.problems
}

#[derive(Default)]
struct Walk {
    problems: Vec<Problem>,
    /// (path of the referring key, section, name referred to).
    refs: Vec<(String, &'static str, String)>,
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

impl Walk {
    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    fn table(&mut self, prefix: &str, dict: &Dict, fields: &[Field]) {
        for (key, value) in dict {
            let path = join(prefix, key);
            match fields.iter().find(|f| f.key == key) {
                Some(field) => self.value(&path, value, field.kind),
                None => {
                    let hint = match nearest(key, fields.iter().map(|f| f.key)) {
                        Some(k) => format!("; the nearest known key is {k:?}"),
                        None => {
                            let known: Vec<&str> = fields.iter().map(|f| f.key).collect();
                            format!("; known keys: {}", known.join(", "))
                        }
                    };
                    self.problem(path, format!("unknown key {key:?}{hint}"));
                }
            }
        }
        for field in fields.iter().filter(|f| f.required) {
            if !dict.contains_key(field.key) {
                self.problem(join(prefix, field.key), "missing; this key is required");
            }
        }
    }

    fn value(&mut self, path: &str, value: &Value, kind: Kind) {
        let expected = |what: &str| format!("expected {what}, got {}", show(value));
        match kind {
            Kind::Duration => match value {
                Value::String(_, s) => {
                    if let Err(e) = duration::parse(s) {
                        self.problem(path, e);
                    }
                }
                _ => self.problem(
                    path,
                    expected(&format!("a duration in quotes ({})", duration::EXAMPLES)),
                ),
            },
            Kind::Int { min, max, expect } => match int(value) {
                Some(n) if (min..=max).contains(&n) => {}
                _ => self.problem(path, expected(expect)),
            },
            Kind::Number { ok, expect } => match number(value) {
                Some(x) if ok(x) => {}
                _ => self.problem(path, expected(expect)),
            },
            Kind::Bool => {
                if value.to_bool_lossy().is_none() {
                    self.problem(path, expected("true or false"));
                }
            }
            Kind::Str | Kind::Path => {
                if !matches!(value, Value::String(..)) {
                    self.problem(path, expected("a string"));
                }
            }
            Kind::Choice(choices) => match value {
                Value::String(_, s) if choices.contains(&s.as_str()) => {}
                _ => {
                    let list = choices
                        .iter()
                        .map(|c| format!("{c:?}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    self.problem(path, expected(&format!("one of {list}")));
                }
            },
            Kind::Ref(section) => match value {
                Value::String(_, name) => {
                    self.refs.push((path.to_string(), section, name.clone()));
                }
                _ => self.problem(
                    path,
                    expected(&format!("the name of a [{section}] entry, in quotes")),
                ),
            },
            Kind::Window => match (int(value), value) {
                (Some(n), _) if (1..=i128::from(u32::MAX)).contains(&n) => {}
                (None, Value::String(_, s)) => {
                    if let Err(e) = duration::parse(s) {
                        self.problem(path, e);
                    }
                }
                _ => self.problem(
                    path,
                    expected("a positive number of calls or a duration such as \"60s\""),
                ),
            },
            Kind::DurationMap => match value {
                Value::Dict(_, dict) => {
                    for (name, d) in dict {
                        self.value(&join(path, name), d, Kind::Duration);
                    }
                }
                _ => self.problem(path, expected("a table of names to durations")),
            },
            Kind::Table(fields) => match value {
                Value::Dict(_, dict) => self.table(path, dict, fields),
                _ => self.problem(path, expected("a table")),
            },
            Kind::Map(fields) => match value {
                Value::Dict(_, dict) => {
                    for (name, entry) in dict {
                        let entry_path = join(path, name);
                        match entry {
                            Value::Dict(_, d) => self.table(&entry_path, d, fields),
                            other => self.problem(
                                entry_path,
                                format!("expected a table ([{path}.{name}]), got {}", show(other)),
                            ),
                        }
                    }
                }
                _ => self.problem(path, expected("a table of named entries")),
            },
        }
    }

    /// Checks every reference against the sections of `root`.
    fn resolve(&mut self, root: &Dict) {
        for (path, section, name) in std::mem::take(&mut self.refs) {
            let defined: Vec<&str> = match root.get(section) {
                Some(Value::Dict(_, d)) => d.keys().map(String::as_str).collect(),
                _ => Vec::new(),
            };
            if defined.contains(&name.as_str()) {
                continue;
            }
            let known = if defined.is_empty() {
                format!("there is no [{section}] section")
            } else {
                format!("defined: {}", defined.join(", "))
            };
            self.problem(
                path,
                format!("{name:?} is not defined: no [{section}.{name}] in the config ({known})"),
            );
        }
    }
}

/// The known key nearest to `key` (edit distance), if any is close enough
/// to be a likely typo: at most a third of the key's length, and at least 2.
pub(crate) fn nearest<'a>(key: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (key.chars().count() / 3).max(2);
    known
        .map(|k| (strsim::levenshtein(key, k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

// The environment gives strings: "200" and "true" are read as the number
// and the bool they spell (as figment's typed extraction does).
fn int(value: &Value) -> Option<i128> {
    match value.to_num_lossy() {
        Some(n) => n
            .to_i128()
            .or_else(|| n.to_u128().and_then(|u| i128::try_from(u).ok()))
            .or_else(|| {
                // A float with no fraction (an environment's "5.0") is an integer.
                n.to_f64()
                    .filter(|x| x.fract() == 0.0 && x.abs() < 1e30)
                    .map(|x| x as i128)
            }),
        _ => None,
    }
}

fn number(value: &Value) -> Option<f64> {
    let n = value.to_num_lossy()?;
    n.to_f64()
        .or_else(|| n.to_i128().map(|i| i as f64))
        .or_else(|| n.to_u128().map(|u| u as f64))
}

/// A value as an error message shows it: strings quoted, numbers as
/// written, tables and lists by kind.
pub(crate) fn show(value: &Value) -> String {
    match value {
        Value::String(_, s) => format!("{s:?}"),
        Value::Char(_, c) => format!("{:?}", c.to_string()),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => show_num(*n),
        Value::Empty(..) => "nothing".to_string(),
        Value::Dict(..) => "a table".to_string(),
        Value::Array(..) => "a list".to_string(),
    }
}

fn show_num(n: Num) -> String {
    match n {
        Num::F32(x) => x.to_string(),
        Num::F64(x) => x.to_string(),
        n => n
            .to_i128()
            .map(|i| i.to_string())
            .or_else(|| n.to_u128().map(|u| u.to_string()))
            .unwrap_or_else(|| format!("{n:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_finds_a_typo_and_ignores_a_stranger() {
        let keys = ["limit", "window", "burst"];
        assert_eq!(nearest("limt", keys.iter().copied()), Some("limit"));
        assert_eq!(nearest("windwo", keys.iter().copied()), Some("window"));
        assert_eq!(nearest("colour", keys.iter().copied()), None);
    }
}
