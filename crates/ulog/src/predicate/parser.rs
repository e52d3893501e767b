//! Recursive-descent parser from tokens to [`Expr`], resolving keys and literals.

use regex::RegexBuilder;

use super::lexer::{lex, Tok, Token};
use super::text::{compile_like, fold};
use super::{Cmp, Expr, Key, Op, Opts, Value};
use crate::entry::{EventType, MessageType, NumField, StrField};
use crate::error::PredicateError;

/// Nesting limit, so hostile input cannot overflow the stack.
const MAX_DEPTH: usize = 200;

pub(crate) fn parse(source: &str) -> Result<Expr, PredicateError> {
    let tokens = lex(source)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        depth: 0,
    };
    if matches!(p.peek().tok, Tok::End) {
        return Err(PredicateError::new(1, "empty predicate"));
    }
    let expr = p.or()?;
    let t = p.peek();
    if !matches!(t.tok, Tok::End) {
        return Err(PredicateError::new(
            t.column,
            format!("expected AND, OR or the end, found {}", describe(&t.tok)),
        ));
    }
    Ok(expr)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

/// One side of a comparison before it is resolved.
enum Operand {
    Key(String, usize),
    Lit(Lit, usize),
}

#[derive(Debug, Clone)]
enum Lit {
    Str(String),
    Int(i128),
    Float(f64),
    /// A bare word that is not a key position (`error` in `messageType == error`).
    Word(String),
    List(Vec<(Lit, usize)>),
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Str(s) => format!("string \"{s}\""),
        Tok::Int(i) => format!("number {i}"),
        Tok::Float(f) => format!("number {f}"),
        Tok::Punct(p) => format!("`{p}`"),
        Tok::End => "the end".to_owned(),
    }
}

fn keyword(t: &Tok) -> Option<String> {
    match t {
        Tok::Ident(s) => Some(s.to_ascii_uppercase()),
        Tok::Punct(p) => Some((*p).to_owned()),
        _ => None,
    }
}

impl Parser {
    fn peek(&self) -> &Token {
        // The token list always ends with `End`, and `pos` never passes it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn at_keyword(&self, kw: &str) -> bool {
        keyword(&self.peek().tok).as_deref() == Some(kw)
    }

    fn enter(&mut self) -> Result<(), PredicateError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(PredicateError::new(
                self.peek().column,
                format!("predicate nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, PredicateError> {
        self.enter()?;
        let mut left = self.and()?;
        while self.at_keyword("OR") {
            self.bump();
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, PredicateError> {
        let mut left = self.not()?;
        while self.at_keyword("AND") {
            self.bump();
            let right = self.not()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, PredicateError> {
        if self.at_keyword("NOT") {
            self.bump();
            self.enter()?;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, PredicateError> {
        let t = self.peek().clone();
        if t.tok == Tok::Punct("(") {
            self.bump();
            let e = self.or()?;
            let close = self.bump();
            if close.tok != Tok::Punct(")") {
                return Err(PredicateError::new(
                    close.column,
                    format!(
                        "expected `)` to close `(` at column {}, found {}",
                        t.column,
                        describe(&close.tok)
                    ),
                ));
            }
            return Ok(e);
        }
        match keyword(&t.tok).as_deref() {
            Some("TRUEPREDICATE") => {
                self.bump();
                return Ok(Expr::Const(true));
            }
            Some("FALSEPREDICATE") => {
                self.bump();
                return Ok(Expr::Const(false));
            }
            Some("ANY" | "SOME" | "ALL" | "NONE") => {
                return Err(PredicateError::new(
                    t.column,
                    format!(
                        "aggregate {} is not supported on log entries",
                        describe(&t.tok)
                    ),
                ));
            }
            _ => {}
        }
        self.comparison()
    }

    fn operand(&mut self, key_position: bool) -> Result<Operand, PredicateError> {
        let t = self.bump();
        let col = t.column;
        Ok(match t.tok {
            Tok::Str(s) => Operand::Lit(Lit::Str(s), col),
            Tok::Int(i) => Operand::Lit(Lit::Int(i), col),
            Tok::Float(f) => Operand::Lit(Lit::Float(f), col),
            Tok::Punct("{") => Operand::Lit(self.list(col)?, col),
            Tok::Ident(s) if is_reserved(&s) => {
                return Err(PredicateError::new(
                    col,
                    format!("expected a key or a value, found keyword `{s}`"),
                ))
            }
            Tok::Ident(s) if key_position => Operand::Key(s, col),
            Tok::Ident(s) => Operand::Lit(Lit::Word(s), col),
            other => {
                return Err(PredicateError::new(
                    col,
                    format!("expected a key or a value, found {}", describe(&other)),
                ))
            }
        })
    }

    fn list(&mut self, open_col: usize) -> Result<Lit, PredicateError> {
        let mut items = Vec::new();
        if self.peek().tok == Tok::Punct("}") {
            self.bump();
            return Ok(Lit::List(items));
        }
        loop {
            match self.operand(false)? {
                Operand::Lit(Lit::List(_), col) => {
                    return Err(PredicateError::new(col, "nested lists are not supported"))
                }
                Operand::Lit(l, col) => items.push((l, col)),
                Operand::Key(k, col) => {
                    return Err(PredicateError::new(
                        col,
                        format!("expected a value, found `{k}`"),
                    ))
                }
            }
            let t = self.bump();
            match t.tok {
                Tok::Punct(",") => continue,
                Tok::Punct("}") => return Ok(Lit::List(items)),
                other => {
                    return Err(PredicateError::new(
                        t.column,
                        format!(
                        "expected `,` or `}}` in the list opened at column {open_col}, found {}",
                        describe(&other)
                    ),
                    ))
                }
            }
        }
    }

    fn operator(&mut self) -> Result<(Op, Opts, usize), PredicateError> {
        let t = self.bump();
        let op = match keyword(&t.tok).as_deref() {
            Some("==") => Op::Eq,
            Some("!=") => Op::Ne,
            Some("<") => Op::Lt,
            Some("<=") => Op::Le,
            Some(">") => Op::Gt,
            Some(">=") => Op::Ge,
            Some("CONTAINS") => Op::Contains,
            Some("BEGINSWITH") => Op::BeginsWith,
            Some("ENDSWITH") => Op::EndsWith,
            Some("LIKE") => Op::Like,
            Some("MATCHES") => Op::Matches,
            Some("IN") => Op::In,
            Some("BETWEEN") => Op::Between,
            _ => {
                return Err(PredicateError::new(
                    t.column,
                    format!(
                        "expected an operator (==, !=, <, >, CONTAINS, BEGINSWITH, ENDSWITH, LIKE, MATCHES, IN, BETWEEN), found {}",
                        describe(&t.tok)
                    ),
                ))
            }
        };
        let mut opts = Opts::default();
        if self.peek().tok == Tok::Punct("[") {
            self.bump();
            let m = self.bump();
            let Tok::Ident(flags) = &m.tok else {
                return Err(PredicateError::new(
                    m.column,
                    format!("expected modifiers c, d or cd, found {}", describe(&m.tok)),
                ));
            };
            for (i, f) in flags.chars().enumerate() {
                match f.to_ascii_lowercase() {
                    'c' => opts.case_insensitive = true,
                    'd' => opts.diacritic_insensitive = true,
                    // Normalised strings: already the case for `log` text; no-op.
                    'n' => {}
                    other => {
                        return Err(PredicateError::new(
                            m.column + i,
                            format!("unknown modifier `{other}` (expected c, d or n)"),
                        ))
                    }
                }
            }
            let close = self.bump();
            if close.tok != Tok::Punct("]") {
                return Err(PredicateError::new(
                    close.column,
                    format!(
                        "expected `]` after modifiers, found {}",
                        describe(&close.tok)
                    ),
                ));
            }
        }
        Ok((op, opts, t.column))
    }

    fn comparison(&mut self) -> Result<Expr, PredicateError> {
        let left = self.operand(true)?;
        let (op, opts, op_col) = self.operator()?;
        let right = self.operand(matches!(left, Operand::Lit(..)))?;
        let (key_name, key_col, lit, lit_col, swapped) = match (left, right) {
            (Operand::Key(k, kc), Operand::Lit(l, lc)) => (k, kc, l, lc, false),
            (Operand::Lit(l, lc), Operand::Key(k, kc)) => (k, kc, l, lc, true),
            (Operand::Key(_, _), Operand::Key(k2, c2)) => {
                return Err(PredicateError::new(
                    c2,
                    format!("comparing two keys is not supported; quote `{k2}` if it is a string"),
                ))
            }
            (Operand::Lit(_, c), Operand::Lit(_, _)) => {
                return Err(PredicateError::new(
                    c,
                    "a comparison needs a key on one side",
                ))
            }
        };
        let key = resolve_key(&key_name);
        let (op, literal_in_key) = if swapped {
            match op {
                Op::Lt => (Op::Gt, false),
                Op::Le => (Op::Ge, false),
                Op::Gt => (Op::Lt, false),
                Op::Ge => (Op::Le, false),
                Op::Eq | Op::Ne => (op, false),
                // `"x" IN key` reads "key contains x".
                Op::In => (Op::Contains, true),
                _ => {
                    return Err(PredicateError::new(
                        op_col,
                        format!("the key `{key_name}` must be on the left of this operator"),
                    ))
                }
            }
        } else {
            (op, false)
        };
        let _ = key_col;
        let value = self.value_for(&key, op, opts, lit, lit_col)?;
        Ok(Expr::Cmp(Box::new(Cmp {
            key,
            op,
            opts,
            value,
            literal_in_key,
        })))
    }

    fn value_for(
        &self,
        key: &Key,
        op: Op,
        opts: Opts,
        lit: Lit,
        col: usize,
    ) -> Result<Value, PredicateError> {
        match op {
            Op::In | Op::Between => {
                if let Lit::List(items) = lit {
                    if op == Op::Between && items.len() != 2 {
                        return Err(PredicateError::new(
                            col,
                            format!("BETWEEN needs a list of two values, found {}", items.len()),
                        ));
                    }
                    let values = items
                        .into_iter()
                        .map(|(l, c)| scalar(key, Op::Eq, opts, l, c))
                        .collect::<Result<Vec<_>, _>>()?;
                    return Ok(Value::List(values));
                }
                if op == Op::Between {
                    return Err(PredicateError::new(col, "BETWEEN needs a list `{lo, hi}`"));
                }
                // `key IN "haystack"`: the string is the haystack.
                if let Lit::Str(s) = lit {
                    let folded = fold(&s, opts).into_owned();
                    return Ok(Value::Str { raw: s, folded });
                }
                Err(PredicateError::new(
                    col,
                    "IN needs a list `{...}` or a string",
                ))
            }
            _ => {
                if let Lit::List(_) = lit {
                    return Err(PredicateError::new(
                        col,
                        "a list `{...}` needs IN or BETWEEN",
                    ));
                }
                scalar(key, op, opts, lit, col)
            }
        }
    }
}

fn is_reserved(word: &str) -> bool {
    matches!(
        word.to_ascii_uppercase().as_str(),
        "AND"
            | "OR"
            | "NOT"
            | "CONTAINS"
            | "BEGINSWITH"
            | "ENDSWITH"
            | "LIKE"
            | "MATCHES"
            | "IN"
            | "BETWEEN"
            | "TRUEPREDICATE"
            | "FALSEPREDICATE"
    )
}

/// Maps a predicate key (as `log` names them, with aliases) to what it reads.
pub(crate) fn resolve_key(name: &str) -> Key {
    match name {
        "process" => Key::Process,
        "sender" => Key::Sender,
        "eventMessage" | "composedMessage" | "message" => Key::Message,
        "messageType" | "logType" => Key::MessageType,
        "eventType" | "type" => Key::EventType,
        "date" => Key::Str(StrField::Timestamp),
        "processID" | "processIdentifier" | "pid" => Key::Num(NumField::ProcessId),
        "threadID" | "threadIdentifier" | "tid" => Key::Num(NumField::ThreadId),
        "activityID" | "activityIdentifier" => Key::Num(NumField::ActivityIdentifier),
        "parentActivityIdentifier" => Key::Num(NumField::ParentActivityIdentifier),
        "traceID" | "traceIdentifier" => Key::Num(NumField::TraceId),
        "signpostID" | "signpostIdentifier" => Key::Num(NumField::SignpostId),
        "creatorActivityID" | "creatorActivityIdentifier" => Key::Num(NumField::CreatorActivityId),
        "senderImageOffset" | "senderProgramCounter" => Key::Num(NumField::SenderProgramCounter),
        other => {
            if let Some(f) = StrField::ALL.into_iter().find(|f| f.json_key() == other) {
                Key::Str(f)
            } else if let Some(f) = NumField::ALL.into_iter().find(|f| f.json_key() == other) {
                Key::Num(f)
            } else {
                Key::Other(other.to_owned())
            }
        }
    }
}

/// Resolves one literal for a comparison with `key` under `op`.
fn scalar(key: &Key, op: Op, opts: Opts, lit: Lit, col: usize) -> Result<Value, PredicateError> {
    // Named constants for the enumerated keys become their numeric codes.
    let enum_code = |name: &str| -> Result<Option<u64>, PredicateError> {
        match key {
            Key::MessageType => MessageType::from_name(name)
                .map(|t| Some(t.code()))
                .ok_or_else(|| {
                    PredicateError::new(
                        col,
                        format!(
                            "unknown message type `{name}` (expected default, info, debug, error or fault)"
                        ),
                    )
                }),
            Key::EventType => EventType::from_name(name)
                .map(|t| Some(t.code()))
                .ok_or_else(|| {
                    PredicateError::new(
                        col,
                        format!("unknown event type `{name}` (expected logEvent, signpostEvent, activityCreateEvent, ...)"),
                    )
                }),
            _ => Ok(None),
        }
    };
    let enum_key = matches!(key, Key::MessageType | Key::EventType);
    let ordering_or_eq = matches!(op, Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge);
    match lit {
        Lit::Word(w) => {
            match w.to_ascii_lowercase().as_str() {
                "nil" | "null" => return Ok(Value::Null),
                "true" | "yes" => return Ok(Value::Bool(true)),
                "false" | "no" => return Ok(Value::Bool(false)),
                _ => {}
            }
            if enum_key && ordering_or_eq {
                if let Some(code) = enum_code(&w)? {
                    return Ok(Value::Int(i128::from(code)));
                }
            }
            Err(PredicateError::new(
                col,
                format!("expected a value, found `{w}` (quote strings)"),
            ))
        }
        Lit::Str(s) => {
            if enum_key && ordering_or_eq {
                if let Some(code) = enum_code(&s)? {
                    return Ok(Value::Int(i128::from(code)));
                }
            }
            string_value(s, op, opts, col)
        }
        Lit::Int(i) => Ok(
            if matches!(op, Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge) {
                Value::Int(i)
            } else {
                string_value(i.to_string(), op, opts, col)?
            },
        ),
        Lit::Float(f) => Ok(if ordering_or_eq {
            Value::Float(f)
        } else {
            string_value(f.to_string(), op, opts, col)?
        }),
        Lit::List(_) => Err(PredicateError::new(col, "a list is not allowed here")),
    }
}

fn string_value(s: String, op: Op, opts: Opts, col: usize) -> Result<Value, PredicateError> {
    match op {
        Op::Like => Ok(Value::Like(compile_like(&fold(&s, opts)))),
        Op::Matches => {
            let re = RegexBuilder::new(&format!("^(?:{s})$"))
                .case_insensitive(opts.case_insensitive)
                .size_limit(1 << 22)
                .build()
                .map_err(|e| {
                    let detail = e.to_string();
                    let last = detail.lines().last().unwrap_or("").trim().to_owned();
                    PredicateError::new(col, format!("invalid regex \"{s}\": {last}"))
                })?;
            Ok(Value::Regex(Box::new(re)))
        }
        _ => {
            let folded = fold(&s, opts).into_owned();
            Ok(Value::Str { raw: s, folded })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> (usize, String) {
        let e = parse(s).unwrap_err();
        (e.column, e.message)
    }

    #[test]
    fn columns_point_at_the_problem() {
        assert_eq!(err("subsystem == ").0, 14);
        assert_eq!(err("subsystem === \"x\"").0, 13);
        assert_eq!(err("(process == \"a\"").0, 16);
        assert_eq!(err("process CONTAINS[x] \"a\"").0, 18);
        assert_eq!(err("messageType == bogus").0, 16);
        assert_eq!(err("process == \"a\" foo").0, 16);
        assert_eq!(err("process FOO \"a\"").0, 9);
        assert_eq!(err("eventMessage MATCHES \"(\"").0, 22);
        assert_eq!(err("").0, 1);
        assert!(err("subsystem IN {\"a\", }")
            .1
            .contains("expected a key or a value"));
    }

    #[test]
    fn parses_admin_predicates() {
        for p in [
            r#"subsystem == "com.apple.SoftwareUpdateMacController" AND eventMessage CONTAINS[c] "ota""#,
            r#"(subsystem IN {"com.apple.ManagedClient", "com.apple.mdmclient"}) && (category IN {"MDMDaemon", "HTTPUtil"} || eventMessage CONTAINS[cd] "bootstrap")"#,
            r#"process == "softwareupdated" AND (eventMessage CONTAINS[c] "otaDownloaded" OR eventMessage CONTAINS[c] "otaReady")"#,
            r#"messageType == error OR messageType == fault"#,
            r#"logType >= 16 && processImagePath ENDSWITH "mdmclient""#,
            r#"eventType == logEvent AND NOT senderImagePath CONTAINS "libxpc""#,
            r#"eventMessage LIKE[c] "*bootstrap*token*" || eventMessage MATCHES ".*HTTP response \\(\\d+\\).*""#,
            r#"processID BETWEEN {100, 200} AND threadID != 0x1a2b"#,
            r#"'mdmclient' IN process"#,
            r#"TRUEPREDICATE"#,
            r#"subsystem == nil"#,
        ] {
            parse(p).unwrap_or_else(|e| panic!("{p}: {e}"));
        }
    }

    #[test]
    fn depth_limited() {
        let deep = format!("{}process == \"a\"{}", "(".repeat(500), ")".repeat(500));
        assert!(parse(&deep).unwrap_err().message.contains("nested"));
        let nots = format!("{}process == \"a\"", "!".repeat(500));
        assert!(parse(&nots).is_err());
    }
}
