//! Reading Chronos' job JSON field by field, so that every problem names its field as a
//! JSON path (`/environmentVariables(0)/name`) and all problems of a request come back at
//! once instead of the first one.
//!
//! Chronos reads its JSON with Jackson's lenient accessors: `null` is absent, a number may
//! come as a string (`"cpus": "0.5"` is in Chronos' own documentation) and a boolean as
//! `"true"`. We accept the same spellings, but a value that means nothing (`"cpus":
//! "lots"`) is refused where Jackson would silently read 0.

use serde_json::{Map, Value};

/// The most problems reported for one request: a body with a million bad entries still
/// gets a short answer.
const MAX_PROBLEMS: usize = 50;

/// The problems found in one request, in the order found: `(path, message)`.
#[derive(Debug, Default)]
pub struct Problems {
    list: Vec<(String, String)>,
}

impl Problems {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        if self.list.len() < MAX_PROBLEMS {
            self.list.push((path.into(), message.into()));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// The problems grouped by path, in first-seen order of the paths.
    pub fn grouped(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for (path, message) in &self.list {
            match out.iter_mut().find(|(p, _)| p == path) {
                Some((_, messages)) => messages.push(message.clone()),
                None => out.push((path.clone(), vec![message.clone()])),
            }
        }
        out
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.list.iter().map(|(p, m)| (p.as_str(), m.as_str()))
    }
}

/// The JSON type of a value, for messages.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An object being read, with its path.
#[derive(Debug)]
pub struct Obj<'a> {
    pub map: &'a Map<String, Value>,
    pub path: String,
}

impl<'a> Obj<'a> {
    pub fn new(map: &'a Map<String, Value>, path: impl Into<String>) -> Self {
        Self { map, path: path.into() }
    }

    /// The object `value` at `path`, or a problem.
    pub fn of(value: &'a Value, path: &str, problems: &mut Problems) -> Option<Self> {
        match value {
            Value::Object(map) => Some(Self::new(map, path)),
            other => {
                problems.add(
                    if path.is_empty() { "/" } else { path },
                    format!("expected an object, got {}", type_name(other)),
                );
                None
            }
        }
    }

    /// The path of a member.
    pub fn at(&self, key: &str) -> String {
        format!("{}/{key}", self.path)
    }

    /// A member; `None` when absent or `null`.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Names every member not in `known` (a `null` member counts as not given).
    pub fn reject_unknown(&self, known: &[&str], problems: &mut Problems) {
        for (key, value) in self.map {
            if !value.is_null() && !known.contains(&key.as_str()) {
                problems.add(self.at(key), "is not a known field");
            }
        }
    }

    /// A string of at most `max_len` bytes.
    pub fn string(&self, key: &str, max_len: usize, problems: &mut Problems) -> Option<&'a str> {
        let value = self.get(key)?;
        as_string(value, &self.at(key), max_len, problems)
    }

    /// A boolean, also spelled `"true"` or `"false"`.
    pub fn bool(&self, key: &str, problems: &mut Problems) -> Option<bool> {
        match self.get(key)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s == "true" => Some(true),
            Value::String(s) if s == "false" => Some(false),
            other => {
                problems.add(self.at(key), format!("expected a boolean, got {}", type_name(other)));
                None
            }
        }
    }

    /// A finite number within `min..=max`, also written as a string.
    pub fn number(&self, key: &str, min: f64, max: f64, problems: &mut Problems) -> Option<f64> {
        let path = self.at(key);
        let number = match self.get(key)? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            other => {
                problems.add(path, format!("expected a number, got {}", type_name(other)));
                return None;
            }
        };
        match number {
            Some(n) if n.is_finite() && (min..=max).contains(&n) => Some(n),
            Some(n) if n.is_finite() => {
                problems.add(path, format!("{n} is out of range: it must be between {min} and {max}"));
                None
            }
            _ => {
                problems.add(path, "expected a number");
                None
            }
        }
    }

    /// A whole number within `min..=max` (`3.0` and `"3"` count as 3).
    pub fn integer(&self, key: &str, min: i64, max: i64, problems: &mut Problems) -> Option<i64> {
        let path = self.at(key);
        let number = match self.get(key)? {
            Value::Number(n) => {
                n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18).map(|f| f as i64))
            }
            Value::String(s) => s.trim().parse::<i64>().ok(),
            other => {
                problems.add(path, format!("expected a whole number, got {}", type_name(other)));
                return None;
            }
        };
        match number {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(n) => {
                problems.add(path, format!("{n} is out of range: it must be between {min} and {max}"));
                None
            }
            None => {
                problems.add(path, format!("expected a whole number between {min} and {max}"));
                None
            }
        }
    }

    /// An array of at most `max_items` items.
    pub fn array(&self, key: &str, max_items: usize, problems: &mut Problems) -> Option<&'a Vec<Value>> {
        let path = self.at(key);
        match self.get(key)? {
            Value::Array(items) if items.len() > max_items => {
                problems.add(path, format!("has {} items; at most {max_items} are allowed", items.len()));
                None
            }
            Value::Array(items) => Some(items),
            other => {
                problems.add(path, format!("expected an array, got {}", type_name(other)));
                None
            }
        }
    }

    /// An array of strings, each at most `max_len` bytes; `None` when any is wrong.
    pub fn strings(&self, key: &str, max_items: usize, max_len: usize, problems: &mut Problems) -> Option<Vec<String>> {
        let items = self.array(key, max_items, problems)?;
        let path = self.at(key);
        let before = problems.len();
        let out: Vec<String> = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| as_string(item, &format!("{path}({i})"), max_len, problems).map(str::to_owned))
            .collect();
        (problems.len() == before).then_some(out)
    }
}

/// A string of at most `max_len` bytes, or a problem at `path`.
pub fn as_string<'a>(value: &'a Value, path: &str, max_len: usize, problems: &mut Problems) -> Option<&'a str> {
    match value {
        Value::String(s) if s.len() > max_len => {
            problems.add(path, format!("is {} bytes long; at most {max_len} are allowed", s.len()));
            None
        }
        Value::String(s) => Some(s),
        other => {
            problems.add(path, format!("expected a string, got {}", type_name(other)));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read<T>(value: Value, f: impl FnOnce(&Obj<'_>, &mut Problems) -> T) -> (T, Vec<(String, Vec<String>)>) {
        let mut problems = Problems::new();
        let obj = Obj::of(&value, "", &mut problems).expect("an object");
        let out = f(&obj, &mut problems);
        (out, problems.grouped())
    }

    #[test]
    fn numbers_and_booleans_may_be_written_as_strings_as_jackson_reads_them() {
        let (out, problems) = read(json!({"cpus": "0.5", "retries": "3", "shell": "false"}), |o, p| {
            (o.number("cpus", 0.0, 10.0, p), o.integer("retries", 0, 10, p), o.bool("shell", p))
        });
        assert_eq!(out, (Some(0.5), Some(3), Some(false)));
        assert!(problems.is_empty());
    }

    #[test]
    fn a_value_that_means_nothing_is_named_instead_of_read_as_zero() {
        let (_, problems) = read(json!({"cpus": "lots", "retries": 1e12, "shell": 1}), |o, p| {
            (o.number("cpus", 0.0, 10.0, p), o.integer("retries", 0, 10, p), o.bool("shell", p))
        });
        let paths: Vec<&str> = problems.iter().map(|(path, _)| path.as_str()).collect();
        assert_eq!(paths, ["/cpus", "/retries", "/shell"]);
        assert_eq!(problems[1].1, ["1000000000000 is out of range: it must be between 0 and 10"]);
    }

    #[test]
    fn null_counts_as_absent_and_unknown_fields_are_named() {
        let (out, problems) = read(json!({"owner": null, "colour": "red", "legacy": null}), |o, p| {
            o.reject_unknown(&["owner"], p);
            o.string("owner", 10, p).map(str::to_owned)
        });
        assert_eq!(out, None);
        assert_eq!(problems, [("/colour".to_owned(), vec!["is not a known field".to_owned()])]);
    }

    #[test]
    fn a_list_of_strings_names_the_bad_item_by_index() {
        let (out, problems) = read(json!({"arguments": ["-v", 3]}), |o, p| o.strings("arguments", 10, 10, p));
        assert_eq!(out, None);
        assert_eq!(problems, [("/arguments(1)".to_owned(), vec!["expected a string, got a number".to_owned()])]);
    }
}
