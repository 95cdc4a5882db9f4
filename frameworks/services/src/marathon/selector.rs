//! Marathon's label selectors for `GET /v2/apps?label=...`: comma-separated terms, all of
//! which must hold: `key` (present), `key==value`, `key!=value`, `key in (a, b)`,
//! `key notin (a, b)`. A backslash escapes the next character (`three\ is\ cool`).

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Term {
    Exists(String),
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed selector; matches a label map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSelector {
    terms: Vec<Term>,
}

/// Most terms in one selector.
const MAX_TERMS: usize = 64;

impl LabelSelector {
    pub fn parse(text: &str) -> Result<LabelSelector, String> {
        let mut terms = Vec::new();
        for raw in split_top_level(text) {
            let raw = raw.trim();
            if raw.is_empty() {
                continue;
            }
            if terms.len() == MAX_TERMS {
                return Err(format!("a label selector holds at most {MAX_TERMS} terms"));
            }
            terms.push(parse_term(raw)?);
        }
        if terms.is_empty() {
            return Err("the label selector is empty".into());
        }
        Ok(LabelSelector { terms })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.terms.iter().all(|term| match term {
            Term::Exists(k) => labels.contains_key(k),
            Term::Equals(k, v) => labels.get(k) == Some(v),
            // Marathon's `!=` and `notin` also need the label to be there.
            Term::NotEquals(k, v) => labels.get(k).is_some_and(|x| x != v),
            Term::In(k, vs) => labels.get(k).is_some_and(|x| vs.contains(x)),
            Term::NotIn(k, vs) => labels.get(k).is_some_and(|x| !vs.contains(x)),
        })
    }
}

/// Splits on commas outside parentheses, keeping escapes for the term parser.
fn split_top_level(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                current.push(c);
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            '(' => {
                depth += 1;
                current.push(c);
            }
            ')' => {
                depth = depth.saturating_sub(1);
                current.push(c);
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    out.push(current);
    out
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.trim().chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_term(raw: &str) -> Result<Term, String> {
    if let Some((k, v)) = raw.split_once("==") {
        return Ok(Term::Equals(key(k)?, unescape(v)));
    }
    if let Some((k, v)) = raw.split_once("!=") {
        return Ok(Term::NotEquals(key(k)?, unescape(v)));
    }
    for (word, negated) in [(" notin ", true), (" in ", false)] {
        if let Some((k, set)) = raw.split_once(word) {
            let set = set.trim();
            let inner = set
                .strip_prefix('(')
                .and_then(|s| s.strip_suffix(')'))
                .ok_or_else(|| format!("{raw:?}: the set must be in parentheses"))?;
            let values: Vec<String> = split_top_level(inner).iter().map(|v| unescape(v)).collect();
            return Ok(if negated { Term::NotIn(key(k)?, values) } else { Term::In(key(k)?, values) });
        }
    }
    Ok(Term::Exists(key(raw)?))
}

fn key(text: &str) -> Result<String, String> {
    let k = unescape(text);
    if k.is_empty() || k.contains(char::is_whitespace) {
        return Err(format!("{text:?} is not a label name"));
    }
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn selectors_match_as_marathons_do() {
        let s = LabelSelector::parse(
            "foo==one, bla!=one, foo in (one, two, three\\ is\\ cool), bla notin (one, two), existence",
        )
        .expect("valid");
        assert!(s.matches(&labels(&[("foo", "one"), ("bla", "four"), ("existence", "x")])));
        assert!(!s.matches(&labels(&[("foo", "one")])));
        let set = LabelSelector::parse("foo in (one, three\\ is\\ cool)").expect("valid");
        assert!(set.matches(&labels(&[("foo", "three is cool")])));
        assert!(!LabelSelector::parse("bla != one").expect("valid").matches(&labels(&[("x", "y")])));
    }

    #[test]
    fn malformed_selectors_are_refused() {
        assert!(LabelSelector::parse("").is_err());
        assert!(LabelSelector::parse("foo in one").is_err());
        assert!(LabelSelector::parse("==x").is_err());
    }
}
