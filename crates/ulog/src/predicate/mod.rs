//! The predicate language of `log --predicate` (NSPredicate syntax): parser, evaluator and
//! a literal prefilter on raw entry bytes.
//!
//! Supported: `==` `=` `!=` `<>` `<` `<=` `=<` `>` `>=` `=>`, `CONTAINS`, `BEGINSWITH`,
//! `ENDSWITH`, `LIKE` (`*`, `?`), `MATCHES` (regex, whole string), `IN {...}` (and
//! `IN "string"`), `BETWEEN {lo, hi}`, modifiers `[c]` `[d]` `[cd]` (and the no-op `[n]`),
//! `AND`/`&&`, `OR`/`||`, `NOT`/`!`, parentheses, `TRUEPREDICATE`/`FALSEPREDICATE`,
//! single- or double-quoted strings, integers (decimal or `0x` hex), decimals, `nil`.
//! Keywords are case-insensitive. A literal may stand on the left (`"x" IN eventMessage`).

mod eval;
mod lexer;
mod parser;
mod prefilter;
mod text;

use regex::Regex;

use crate::entry::{NumField, StrField};
use crate::error::PredicateError;
use crate::LogEntry;

pub use prefilter::Prefilter;

/// A compiled predicate.
#[derive(Debug, Clone)]
pub struct Predicate {
    source: String,
    expr: Expr,
    prefilter: Prefilter,
}

impl Predicate {
    /// Parses and compiles a predicate.
    pub fn parse(source: &str) -> Result<Predicate, PredicateError> {
        let expr = parser::parse(source)?;
        let prefilter = Prefilter::from_expr(&expr);
        Ok(Predicate {
            source: source.to_owned(),
            expr,
            prefilter,
        })
    }

    /// A predicate that matches everything.
    pub fn always() -> Predicate {
        Predicate {
            source: "TRUEPREDICATE".to_owned(),
            expr: Expr::Const(true),
            prefilter: Prefilter::default(),
        }
    }

    /// The text it was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether `entry` matches.
    pub fn matches(&self, entry: &LogEntry<'_>) -> bool {
        eval::eval(&self.expr, entry)
    }

    /// `false` only when the raw JSON bytes of an entry cannot match (a literal the
    /// predicate requires is absent); `true` means "parse and evaluate".
    pub fn may_match(&self, raw: &[u8]) -> bool {
        self.prefilter.may_match(raw)
    }

    /// The prefilter (for inspection and benchmarks).
    pub fn prefilter(&self) -> &Prefilter {
        &self.prefilter
    }

    /// `may_match` then `matches` on the parsed bytes: `Some(false)` when the prefilter
    /// rejects, `None` when the bytes are parsed and are not a valid entry.
    pub fn matches_raw(&self, raw: &[u8]) -> Option<bool> {
        if !self.may_match(raw) {
            return Some(false);
        }
        LogEntry::parse(raw).ok().map(|e| self.matches(&e))
    }
}

impl std::str::FromStr for Predicate {
    type Err = PredicateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Predicate::parse(s)
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Expr {
    Const(bool),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(Box<Cmp>),
}

/// What a key reads from an entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Key {
    Str(StrField),
    Process,
    Sender,
    Message,
    Num(NumField),
    MessageType,
    EventType,
    /// Any other field, looked up by JSON key among the entry's other fields.
    Other(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    BeginsWith,
    EndsWith,
    Like,
    Matches,
    In,
    Between,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Opts {
    pub case_insensitive: bool,
    pub diacritic_insensitive: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    /// The string as written, and folded per the comparison's modifiers.
    Str {
        raw: String,
        folded: String,
    },
    List(Vec<Value>),
    Like(Vec<text::LikeTok>),
    Regex(Box<Regex>),
}

#[derive(Debug, Clone)]
pub(crate) struct Cmp {
    pub key: Key,
    pub op: Op,
    pub opts: Opts,
    pub value: Value,
    /// `"literal" IN key`: the literal is the needle and the key's value the haystack.
    pub literal_in_key: bool,
}
