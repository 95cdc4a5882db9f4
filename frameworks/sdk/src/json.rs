//! Reading a REST API's JSON bodies field by field, for frameworks that serve one: every
//! problem names its field as a JSON path (`/healthChecks(0)/portIndex`, the form
//! Marathon and Chronos use) and all problems of a request come back at once, where a
//! serde error would stop at the first.
//!
//! `null` counts as absent everywhere (clients that serialize every attribute send `null`
//! for the ones they do not set). An [`Obj`] is strict by default; [`Obj::lenient`] also
//! takes numbers and booleans written as strings (`"cpus": "0.5"`, `"shell": "true"`), as
//! Jackson-based APIs such as Chronos' read them, while a value that means nothing
//! (`"cpus": "lots"`) is still refused.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// The most problems reported for one request: a body with a million bad entries still
/// gets a short answer.
const MAX_PROBLEMS: usize = 100;

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
    /// Numbers and booleans may be written as strings (see the module doc).
    lenient: bool,
}

impl<'a> Obj<'a> {
    pub fn new(map: &'a Map<String, Value>, path: impl Into<String>) -> Self {
        Self { map, path: path.into(), lenient: false }
    }

    /// The object `value` at `path`, or a problem.
    pub fn of(value: &'a Value, path: &str, problems: &mut Problems) -> Option<Self> {
        match value {
            Value::Object(map) => Some(Self::new(map, path)),
            other => {
                problems.add(root_path(path), format!("expected an object, got {}", type_name(other)));
                None
            }
        }
    }

    /// The same object, read leniently (and its members read with [`Obj::object`] too).
    pub fn lenient(self) -> Self {
        Self { lenient: true, ..self }
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

    /// Names every member not in `known`; an unknown member that is `null` is not given
    /// (clients that serialize whole models send attributes the API dropped as `null`).
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

    pub fn bool(&self, key: &str, problems: &mut Problems) -> Option<bool> {
        match self.get(key)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) if self.lenient && s == "true" => Some(true),
            Value::String(s) if self.lenient && s == "false" => Some(false),
            other => {
                problems.add(self.at(key), format!("expected a boolean, got {}", type_name(other)));
                None
            }
        }
    }

    /// A finite number within `min..=max`.
    pub fn number(&self, key: &str, min: f64, max: f64, problems: &mut Problems) -> Option<f64> {
        match self.get(key)? {
            Value::String(s) if self.lenient => {
                let Some(n) = s.trim().parse::<f64>().ok().filter(|n| n.is_finite()) else {
                    problems.add(self.at(key), "expected a number");
                    return None;
                };
                in_range(n, min, max, &self.at(key), problems)
            }
            value => as_number(value, &self.at(key), min, max, problems),
        }
    }

    /// A whole number within `min..=max` (`3.0` counts as 3).
    pub fn integer(&self, key: &str, min: i64, max: i64, problems: &mut Problems) -> Option<i64> {
        match self.get(key)? {
            Value::String(s) if self.lenient => {
                let Ok(n) = s.trim().parse::<i64>() else {
                    problems.add(self.at(key), format!("expected a whole number between {min} and {max}"));
                    return None;
                };
                in_range(n, min, max, &self.at(key), problems)
            }
            value => as_integer(value, &self.at(key), min, max, problems),
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

    /// A member object, read as this one is (strict or lenient).
    pub fn object(&self, key: &str, problems: &mut Problems) -> Option<Obj<'a>> {
        let value = self.get(key)?;
        Obj::of(value, &self.at(key), problems).map(|obj| Obj { lenient: self.lenient, ..obj })
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

    /// An object of string values (`env`, `labels`).
    pub fn string_map(
        &self,
        key: &str,
        max_entries: usize,
        max_key_len: usize,
        max_value_len: usize,
        problems: &mut Problems,
    ) -> Option<BTreeMap<String, String>> {
        let obj = self.object(key, problems)?;
        if obj.map.len() > max_entries {
            problems.add(obj.path.clone(), format!("has {} entries; at most {max_entries} are allowed", obj.map.len()));
            return None;
        }
        let before = problems.len();
        let mut out = BTreeMap::new();
        for (k, v) in obj.map {
            let path = obj.at(k);
            if k.is_empty() || k.len() > max_key_len {
                problems.add(path.clone(), format!("names must be 1 to {max_key_len} characters long"));
            }
            if let Some(s) = as_string(v, &path, max_value_len, problems) {
                out.insert(k.clone(), s.to_owned());
            }
        }
        (problems.len() == before).then_some(out)
    }
}

/// The document itself is named `/`.
fn root_path(path: &str) -> String {
    if path.is_empty() { "/".to_owned() } else { path.to_owned() }
}

fn in_range<T: PartialOrd + std::fmt::Display>(n: T, min: T, max: T, path: &str, problems: &mut Problems) -> Option<T> {
    if n < min || n > max {
        problems.add(root_path(path), format!("{n} is out of range: it must be between {min} and {max}"));
        return None;
    }
    Some(n)
}

/// A string of at most `max_len` bytes, or a problem at `path`.
pub fn as_string<'v>(value: &'v Value, path: &str, max_len: usize, problems: &mut Problems) -> Option<&'v str> {
    match value {
        Value::String(s) if s.len() > max_len => {
            problems.add(root_path(path), format!("is {} bytes long; at most {max_len} are allowed", s.len()));
            None
        }
        Value::String(s) => Some(s),
        other => {
            problems.add(root_path(path), format!("expected a string, got {}", type_name(other)));
            None
        }
    }
}

/// A finite number within `min..=max`, or a problem at `path`.
pub fn as_number(value: &Value, path: &str, min: f64, max: f64, problems: &mut Problems) -> Option<f64> {
    let Some(n) = value.as_f64().filter(|n| n.is_finite()) else {
        problems.add(root_path(path), format!("expected a number, got {}", type_name(value)));
        return None;
    };
    in_range(n, min, max, path, problems)
}

/// A whole number within `min..=max` (`3.0` counts as 3), or a problem at `path`.
pub fn as_integer(value: &Value, path: &str, min: i64, max: i64, problems: &mut Problems) -> Option<i64> {
    let whole = match value {
        // Beyond 2^53 a float no longer says which whole number it meant.
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64)),
        _ => None,
    };
    let Some(n) = whole else {
        let what =
            if value.is_number() { "a fraction or out of range".to_owned() } else { type_name(value).to_owned() };
        problems.add(root_path(path), format!("expected a whole number, got {what}"));
        return None;
    };
    in_range(n, min, max, path, problems)
}

/// Whether the strings in `items` are unique; names the first duplicate.
pub fn unique<'s>(items: impl IntoIterator<Item = &'s str>, path: &str, what: &str, problems: &mut Problems) {
    let mut seen = BTreeSet::new();
    for item in items {
        if !seen.insert(item) {
            problems.add(path, format!("{what} must be unique; {item:?} appears more than once"));
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read<T>(
        value: Value,
        lenient: bool,
        f: impl FnOnce(&Obj<'_>, &mut Problems) -> T,
    ) -> (T, Vec<(String, Vec<String>)>) {
        let mut problems = Problems::new();
        let obj = Obj::of(&value, "", &mut problems).expect("an object");
        let obj = if lenient { obj.lenient() } else { obj };
        let out = f(&obj, &mut problems);
        (out, problems.grouped())
    }

    #[test]
    fn typed_reads_name_the_member_and_treat_null_as_absent() {
        let doc = json!({"a": "x", "n": 2.0, "f": 2.5, "b": "no", "z": null, "l": [1, "y"]});
        let (out, problems) = read(doc, false, |o, p| {
            let read = (o.string("a", 10, p).map(str::to_owned), o.integer("n", 0, 10, p), o.integer("f", 0, 10, p));
            let rest = (o.bool("b", p), o.string("z", 10, p).map(str::to_owned), o.strings("l", 10, 10, p));
            o.reject_unknown(&["a", "n", "f", "b", "z"], p);
            (read, rest)
        });
        assert_eq!(out, ((Some("x".to_owned()), Some(2), None), (None, None, None)));
        let paths: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["/f", "/b", "/l(0)", "/l"]);
    }

    #[test]
    fn strict_reads_refuse_numbers_and_booleans_written_as_strings() {
        let (out, problems) = read(json!({"cpus": "0.5", "shell": "false"}), false, |o, p| {
            (o.number("cpus", 0.0, 1.0, p), o.bool("shell", p))
        });
        assert_eq!(out, (None, None));
        assert_eq!(problems.len(), 2);
    }

    #[test]
    fn lenient_reads_take_numbers_and_booleans_written_as_strings_as_jackson_does() {
        let (out, problems) = read(json!({"cpus": "0.5", "retries": "3", "shell": "false"}), true, |o, p| {
            (o.number("cpus", 0.0, 10.0, p), o.integer("retries", 0, 10, p), o.bool("shell", p))
        });
        assert_eq!(out, (Some(0.5), Some(3), Some(false)));
        assert!(problems.is_empty());
    }

    #[test]
    fn a_lenient_value_that_means_nothing_is_named_instead_of_read_as_zero() {
        let (_, problems) = read(json!({"cpus": "lots", "retries": 1e12, "shell": 1}), true, |o, p| {
            (o.number("cpus", 0.0, 10.0, p), o.integer("retries", 0, 10, p), o.bool("shell", p))
        });
        let paths: Vec<&str> = problems.iter().map(|(path, _)| path.as_str()).collect();
        assert_eq!(paths, ["/cpus", "/retries", "/shell"]);
        assert_eq!(problems[1].1, ["1000000000000 is out of range: it must be between 0 and 10"]);
    }

    #[test]
    fn members_read_as_objects_keep_the_leniency_of_their_parent() {
        let (out, _) =
            read(json!({"inner": {"n": "4"}}), true, |o, p| o.object("inner", p).and_then(|i| i.integer("n", 0, 9, p)));
        assert_eq!(out, Some(4));
    }

    #[test]
    fn an_unknown_member_is_refused_unless_it_is_null() {
        let doc = json!({"inactiveAfterSeconds": 1, "unreachableInactiveAfterSeconds": null, "other": 0});
        let obj = Obj::of(&doc, "/unreachableStrategy", &mut Problems::new()).expect("object");
        let mut problems = Problems::new();
        obj.reject_unknown(&["inactiveAfterSeconds"], &mut problems);
        let paths: Vec<&str> = problems.iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["/unreachableStrategy/other"]);
    }

    #[test]
    fn numbers_out_of_range_are_reported_with_their_bounds() {
        let (_, problems) = read(json!({"n": -1}), false, |o, p| o.number("n", 0.0, 5.0, p));
        assert_eq!(
            problems,
            vec![("/n".to_owned(), vec!["-1 is out of range: it must be between 0 and 5".to_owned()])]
        );
    }

    #[test]
    fn a_list_of_strings_names_the_bad_item_by_index() {
        let (out, problems) = read(json!({"arguments": ["-v", 3]}), false, |o, p| o.strings("arguments", 10, 10, p));
        assert_eq!(out, None);
        assert_eq!(problems, [("/arguments(1)".to_owned(), vec!["expected a string, got a number".to_owned()])]);
    }

    #[test]
    fn a_repeated_item_is_named_once() {
        let mut problems = Problems::new();
        unique(["a", "b", "a", "a"], "/ids", "ids", &mut problems);
        assert_eq!(
            problems.grouped(),
            [("/ids".to_owned(), vec!["ids must be unique; \"a\" appears more than once".to_owned()])]
        );
    }
}
