//! Reading Marathon's JSON by hand, field by field, so that every problem is reported with
//! the JSON path Marathon would name (`/healthChecks(0)/portIndex`) and all problems of a
//! request come back at once instead of the first serde error.
//!
//! `null` counts as absent everywhere, as in Marathon (clients that serialize every
//! attribute send `null` for the ones they do not set).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

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
        // Bounded: a body with a million bad entries gets a readable answer.
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

/// Most problems reported for one request.
const MAX_PROBLEMS: usize = 100;

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

/// An object being read, with its path. Keys read through it are remembered, so that
/// [`Obj::reject_unknown`] can name the others.
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
                problems.add(root_path(path), format!("expected an object, got {}", type_name(other)));
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

    /// Names every member not in `known`; an unknown member that is `null` is not given
    /// (marathon-python's `minimal=False` sends every attribute its models have, some of
    /// which Marathon dropped, as `null`).
    pub fn reject_unknown(&self, known: &[&str], problems: &mut Problems) {
        for (key, value) in self.map {
            if !value.is_null() && !known.contains(&key.as_str()) {
                problems.add(self.at(key), "is not a known field");
            }
        }
    }

    pub fn string(&self, key: &str, max_len: usize, problems: &mut Problems) -> Option<&'a str> {
        let value = self.get(key)?;
        as_string(value, &self.at(key), max_len, problems)
    }

    pub fn bool(&self, key: &str, problems: &mut Problems) -> Option<bool> {
        match self.get(key)? {
            Value::Bool(b) => Some(*b),
            other => {
                problems.add(self.at(key), format!("expected a boolean, got {}", type_name(other)));
                None
            }
        }
    }

    /// A finite number within `min..=max`.
    pub fn number(&self, key: &str, min: f64, max: f64, problems: &mut Problems) -> Option<f64> {
        let value = self.get(key)?;
        as_number(value, &self.at(key), min, max, problems)
    }

    /// A whole number within `min..=max` (`3.0` counts as 3, as in Marathon).
    pub fn integer(&self, key: &str, min: i64, max: i64, problems: &mut Problems) -> Option<i64> {
        let value = self.get(key)?;
        as_integer(value, &self.at(key), min, max, problems)
    }

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

    pub fn object(&self, key: &str, problems: &mut Problems) -> Option<Obj<'a>> {
        let value = self.get(key)?;
        Obj::of(value, &self.at(key), problems)
    }

    /// An array of strings, each at most `max_len` long.
    pub fn strings(&self, key: &str, max_items: usize, max_len: usize, problems: &mut Problems) -> Option<Vec<String>> {
        let items = self.array(key, max_items, problems)?;
        let path = self.at(key);
        let mut out = Vec::with_capacity(items.len());
        let before = problems.len();
        for (i, item) in items.iter().enumerate() {
            if let Some(s) = as_string(item, &format!("{path}({i})"), max_len, problems) {
                out.push(s.to_owned());
            }
        }
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
            match v {
                Value::String(s) if s.len() > max_value_len => {
                    problems.add(path, format!("is longer than {max_value_len} characters"))
                }
                Value::String(s) => {
                    out.insert(k.clone(), s.clone());
                }
                other => problems.add(path, format!("expected a string, got {}", type_name(other))),
            }
        }
        (problems.len() == before).then_some(out)
    }
}

/// Marathon names the document itself `/`.
fn root_path(path: &str) -> String {
    if path.is_empty() { "/".to_owned() } else { path.to_owned() }
}

pub fn as_string<'v>(value: &'v Value, path: &str, max_len: usize, problems: &mut Problems) -> Option<&'v str> {
    match value {
        Value::String(s) if s.len() > max_len => {
            problems.add(root_path(path), format!("is longer than {max_len} characters"));
            None
        }
        Value::String(s) => Some(s),
        other => {
            problems.add(root_path(path), format!("expected a string, got {}", type_name(other)));
            None
        }
    }
}

pub fn as_number(value: &Value, path: &str, min: f64, max: f64, problems: &mut Problems) -> Option<f64> {
    let Some(n) = value.as_f64().filter(|n| n.is_finite()) else {
        problems.add(root_path(path), format!("expected a number, got {}", type_name(value)));
        return None;
    };
    if n < min || n > max {
        problems.add(root_path(path), format!("must be between {min} and {max}, got {n}"));
        return None;
    }
    Some(n)
}

pub fn as_integer(value: &Value, path: &str, min: i64, max: i64, problems: &mut Problems) -> Option<i64> {
    let whole = match value {
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
    if n < min || n > max {
        problems.add(root_path(path), format!("must be between {min} and {max}, got {n}"));
        return None;
    }
    Some(n)
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
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_reads_name_the_member_and_treat_null_as_absent() {
        let doc = json!({"a": "x", "n": 2.0, "f": 2.5, "b": "no", "z": null, "l": [1, "y"]});
        let obj = Obj::of(&doc, "", &mut Problems::new()).expect("object");
        let mut problems = Problems::new();
        assert_eq!(obj.string("a", 10, &mut problems), Some("x"));
        assert_eq!(obj.integer("n", 0, 10, &mut problems), Some(2));
        assert_eq!(obj.integer("f", 0, 10, &mut problems), None);
        assert_eq!(obj.bool("b", &mut problems), None);
        assert_eq!(obj.string("z", 10, &mut problems), None);
        assert_eq!(obj.strings("l", 10, 10, &mut problems), None);
        obj.reject_unknown(&["a", "n", "f", "b", "z"], &mut problems);
        let paths: Vec<&str> = problems.iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["/f", "/b", "/l(0)", "/l"]);
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
        let doc = json!({"n": -1});
        let obj = Obj::of(&doc, "", &mut Problems::new()).expect("object");
        let mut problems = Problems::new();
        assert_eq!(obj.number("n", 0.0, 5.0, &mut problems), None);
        assert_eq!(problems.grouped(), vec![("/n".to_owned(), vec!["must be between 0 and 5, got -1".to_owned()])]);
    }
}
