//! Literal prefilter: rejects an entry from its raw JSON bytes, before parsing, when a
//! string the predicate requires cannot be in it.
//!
//! From the predicate we derive clauses (all must hold), each a set of alternative literals
//! (one must appear). A literal is the longest run of the compared string that JSON never
//! escapes (no `"`, `\`, `/` or control characters), so it appears verbatim in the raw
//! bytes whenever the field holds it, unless the producer used `\uXXXX` escapes: lines
//! containing `\u` are never rejected. Case-insensitive literals are searched ASCII
//! case-insensitively, and only ASCII lines are rejected on them (Unicode lower-casing can
//! map a non-ASCII character to an ASCII one, e.g. KELVIN SIGN to `k`).

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use memchr::memmem;

use super::text::like_runs;
use super::{Cmp, Expr, Key, Op, Value};

/// Shortest literal worth searching for.
const MIN_LITERAL: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Lit {
    text: String,
    case_insensitive: bool,
}

/// Compiled prefilter; the default one accepts everything.
#[derive(Debug, Clone, Default)]
pub struct Prefilter {
    clauses: Vec<Clause>,
}

#[derive(Debug, Clone)]
struct Clause {
    literals: Vec<Lit>,
    exact: Option<memmem::Finder<'static>>,
    any: Option<AhoCorasick>,
    any_ci: Option<AhoCorasick>,
}

impl Clause {
    fn new(mut literals: Vec<Lit>) -> Option<Clause> {
        literals.sort();
        literals.dedup();
        let (ci, cs): (Vec<&Lit>, Vec<&Lit>) = literals.iter().partition(|l| l.case_insensitive);
        let build = |lits: &[&Lit], ci: bool| -> Option<AhoCorasick> {
            if lits.is_empty() {
                return None;
            }
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(ci)
                .match_kind(MatchKind::LeftmostFirst)
                .build(lits.iter().map(|l| l.text.as_bytes()))
                .ok()
        };
        let mut clause = Clause {
            exact: None,
            any: None,
            any_ci: build(&ci, true),
            literals: Vec::new(),
        };
        if cs.len() == 1 {
            clause.exact = Some(memmem::Finder::new(cs[0].text.as_bytes()).into_owned());
        } else {
            clause.any = build(&cs, false);
        }
        // If an automaton failed to build the clause cannot be checked: drop it.
        if (clause.exact.is_none() && clause.any.is_none() && !cs.is_empty())
            || (clause.any_ci.is_none() && !ci.is_empty())
        {
            return None;
        }
        clause.literals = literals;
        Some(clause)
    }

    fn found(&self, raw: &[u8]) -> bool {
        self.exact.as_ref().is_some_and(|f| f.find(raw).is_some())
            || self.any.as_ref().is_some_and(|a| a.is_match(raw))
            || self.any_ci.as_ref().is_some_and(|a| a.is_match(raw))
    }

    fn has_ci(&self) -> bool {
        self.any_ci.is_some()
    }

    fn score(&self) -> usize {
        self.literals
            .iter()
            .map(|l| l.text.len())
            .min()
            .unwrap_or(0)
    }
}

impl Prefilter {
    pub(crate) fn from_expr(expr: &Expr) -> Prefilter {
        let mut clauses: Vec<Clause> = requirement(expr)
            .unwrap_or_default()
            .into_iter()
            .filter_map(Clause::new)
            .collect();
        // Most selective (longest, case-sensitive) first.
        clauses.sort_by_key(|c| (c.has_ci(), std::cmp::Reverse(c.score())));
        Prefilter { clauses }
    }

    /// Whether the prefilter rejects anything at all.
    pub fn is_active(&self) -> bool {
        !self.clauses.is_empty()
    }

    /// The required literals, one inner list of alternatives per clause (for diagnostics).
    pub fn literals(&self) -> Vec<Vec<String>> {
        self.clauses
            .iter()
            .map(|c| c.literals.iter().map(|l| l.text.clone()).collect())
            .collect()
    }

    /// `false` only when `raw` cannot match.
    pub fn may_match(&self, raw: &[u8]) -> bool {
        for clause in &self.clauses {
            if clause.found(raw) {
                continue;
            }
            if memmem::find(raw, b"\\u").is_some() {
                return true;
            }
            if clause.has_ci() && !raw.is_ascii() {
                return true;
            }
            return false;
        }
        true
    }
}

/// Clauses that must all hold, or `None` when nothing is required.
fn requirement(expr: &Expr) -> Option<Vec<Vec<Lit>>> {
    match expr {
        Expr::Const(_) | Expr::Not(_) => None,
        Expr::And(a, b) => match (requirement(a), requirement(b)) {
            (None, None) => None,
            (Some(x), None) | (None, Some(x)) => Some(x),
            (Some(mut x), Some(y)) => {
                x.extend(y);
                Some(x)
            }
        },
        Expr::Or(a, b) => {
            let best = |clauses: Vec<Vec<Lit>>| {
                clauses
                    .into_iter()
                    .max_by_key(|c| c.iter().map(|l| l.text.len()).min().unwrap_or(0))
            };
            let mut left = best(requirement(a)?)?;
            let right = best(requirement(b)?)?;
            left.extend(right);
            Some(vec![left])
        }
        Expr::Cmp(c) => cmp_literals(c).map(|alts| vec![alts]),
    }
}

fn cmp_literals(c: &Cmp) -> Option<Vec<Lit>> {
    // Other fields may hold numbers whose text differs from the raw JSON (`1e2`): skip.
    let stringy = matches!(
        c.key,
        Key::Str(_) | Key::Process | Key::Sender | Key::Message
    );
    if !stringy || c.opts.diacritic_insensitive {
        return None;
    }
    let ci = c.opts.case_insensitive;
    let one = |s: &str| {
        safe_run(s, ci).map(|text| {
            vec![Lit {
                text,
                case_insensitive: ci,
            }]
        })
    };
    match (&c.value, c.op) {
        (Value::Str { raw, .. }, Op::Eq | Op::Contains | Op::BeginsWith | Op::EndsWith) => one(raw),
        (Value::Like(pattern), Op::Like) => {
            let runs = like_runs(pattern);
            let longest = runs.iter().max_by_key(|r| r.len())?;
            one(longest)
        }
        (Value::List(items), Op::In) => {
            let mut alts = Vec::new();
            for v in items {
                match v {
                    Value::Str { raw, .. } => alts.extend(one(raw)?),
                    _ => return None,
                }
            }
            (!alts.is_empty()).then_some(alts)
        }
        _ => None,
    }
}

/// The longest run of `s` that JSON writes verbatim; `None` if too short (or non-ASCII when
/// matched case-insensitively).
fn safe_run(s: &str, case_insensitive: bool) -> Option<String> {
    let run = s
        .split(|c: char| c == '"' || c == '\\' || c == '/' || c.is_control())
        .max_by_key(|r| r.len())?;
    if run.len() < MIN_LITERAL || (case_insensitive && !run.is_ascii()) {
        return None;
    }
    Some(if case_insensitive {
        run.to_ascii_lowercase()
    } else {
        run.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use crate::Predicate;

    fn lits(p: &str) -> Vec<Vec<String>> {
        Predicate::parse(p).unwrap().prefilter().literals()
    }

    #[test]
    fn derives_literals() {
        assert_eq!(
            lits(
                r#"subsystem == "com.apple.SoftwareUpdateMacController" AND eventMessage CONTAINS[c] "ota""#
            ),
            vec![
                vec!["com.apple.SoftwareUpdateMacController".to_owned()],
                vec!["ota".to_owned()]
            ]
        );
        assert_eq!(
            lits(r#"processImagePath == "/usr/libexec/mdmclient""#),
            vec![vec!["mdmclient".to_owned()]]
        );
        assert_eq!(
            lits(r#"process == "a" OR subsystem BEGINSWITH "com.apple.x""#),
            Vec::<Vec<String>>::new()
        );
        assert_eq!(
            lits(r#"process == "mdmclient" OR subsystem BEGINSWITH "com.apple.x""#),
            vec![vec!["com.apple.x".to_owned(), "mdmclient".to_owned()]]
        );
        assert!(lits(r#"NOT process == "mdmclient""#).is_empty());
        assert!(lits(r#"eventMessage CONTAINS[d] "cafe""#).is_empty());
        assert!(lits(r#"process != "mdmclient""#).is_empty());
        assert_eq!(
            lits(r#"eventMessage LIKE "*Boot*strap token*""#),
            vec![vec!["strap token".to_owned()]]
        );
    }

    #[test]
    fn rejects_only_when_sound() {
        let p = Predicate::parse(r#"eventMessage CONTAINS[c] "ota""#).unwrap();
        assert!(!p.may_match(br#"{"eventMessage":"nothing here"}"#));
        assert!(p.may_match(br#"{"eventMessage":"OTA"}"#));
        // Escaped or non-ASCII lines are never rejected.
        assert!(p.may_match(br#"{"eventMessage":"\u004fTA"}"#));
        assert!(p.may_match("{\"eventMessage\":\"caf\u{e9}\"}".as_bytes()));
        let exact = Predicate::parse(r#"process == "mdmclient""#).unwrap();
        assert!(!exact.may_match("{\"eventMessage\":\"caf\u{e9}\"}".as_bytes()));
    }
}
