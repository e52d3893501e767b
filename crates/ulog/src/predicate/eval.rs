//! Evaluation of a parsed predicate against one entry.
//!
//! Semantics follow NSPredicate: a missing field compares unequal to everything (so `!=`
//! is true and every other operator false), `== nil` is true only when it is missing.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::text::{contains, fold, like};
use super::{Cmp, Expr, Key, Op, Value};
use crate::entry::StrField;
use crate::LogEntry;

pub(crate) fn eval(expr: &Expr, entry: &LogEntry<'_>) -> bool {
    match expr {
        Expr::Const(b) => *b,
        Expr::And(a, b) => eval(a, entry) && eval(b, entry),
        Expr::Or(a, b) => eval(a, entry) || eval(b, entry),
        Expr::Not(a) => !eval(a, entry),
        Expr::Cmp(c) => compare(c, entry),
    }
}

/// A field's value as read for a comparison.
enum Subject<'e> {
    Missing,
    Str(Cow<'e, str>),
    Num(u64),
    Float(f64),
    Bool(bool),
}

fn subject<'e>(key: &Key, entry: &'e LogEntry<'_>) -> Subject<'e> {
    let s = |v: Option<&'e str>| v.map_or(Subject::Missing, |s| Subject::Str(Cow::Borrowed(s)));
    match key {
        Key::Str(f) => s(entry.get_str(*f)),
        Key::Process => s(entry.process()),
        Key::Sender => s(entry.sender()),
        Key::Message => s(entry.message()),
        Key::Num(f) => entry.get_num(*f).map_or(Subject::Missing, Subject::Num),
        // Enumerations compare by code; an unknown name still compares as a string.
        Key::MessageType => match entry.message_type() {
            Some(t) => Subject::Num(t.code()),
            None => s(entry.get_str(StrField::MessageType)),
        },
        Key::EventType => match entry.event_type() {
            Some(t) => Subject::Num(t.code()),
            None => s(entry.get_str(StrField::EventType)),
        },
        Key::Other(name) => match entry.get_extra(name) {
            None => Subject::Missing,
            Some(raw) => match serde_json::from_str::<serde_json::Value>(raw.get()) {
                Ok(serde_json::Value::String(v)) => Subject::Str(Cow::Owned(v)),
                Ok(serde_json::Value::Number(n)) => match n.as_u64() {
                    Some(u) => Subject::Num(u),
                    None => n.as_f64().map_or(Subject::Missing, Subject::Float),
                },
                Ok(serde_json::Value::Bool(b)) => Subject::Bool(b),
                Ok(serde_json::Value::Null) | Err(_) => Subject::Missing,
                Ok(other) => Subject::Str(Cow::Owned(other.to_string())),
            },
        },
    }
}

fn compare(c: &Cmp, entry: &LogEntry<'_>) -> bool {
    let subj = subject(&c.key, entry);
    if let Subject::Missing = subj {
        return match (&c.value, c.op) {
            (Value::Null, Op::Eq) => true,
            (Value::Null, Op::Ne) => false,
            (_, Op::Ne) => true,
            _ => false,
        };
    }
    match (&c.value, c.op) {
        (Value::Null, Op::Eq) => return false,
        (Value::Null, Op::Ne) => return true,
        (Value::Null, _) => return false,
        _ => {}
    }
    match c.op {
        Op::In | Op::Between => {
            if let Value::List(items) = &c.value {
                if c.op == Op::Between {
                    return between(c, &subj, items);
                }
                return items.iter().any(|v| scalar(c, Op::Eq, &subj, v));
            }
            // `key IN "haystack"`.
            if let (Value::Str { folded, .. }, Some(s)) = (&c.value, subject_text(&subj)) {
                return contains(folded, &fold(&s, c.opts), c.opts);
            }
            false
        }
        Op::Contains if c.literal_in_key => scalar(c, Op::Contains, &subj, &c.value),
        op => scalar(c, op, &subj, &c.value),
    }
}

fn subject_text<'a>(subj: &'a Subject<'_>) -> Option<Cow<'a, str>> {
    match subj {
        Subject::Missing => None,
        Subject::Str(s) => Some(Cow::Borrowed(s.as_ref())),
        Subject::Num(n) => Some(Cow::Owned(n.to_string())),
        Subject::Float(f) => Some(Cow::Owned(f.to_string())),
        Subject::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
    }
}

fn between(c: &Cmp, subj: &Subject<'_>, items: &[Value]) -> bool {
    match items {
        [lo, hi] => scalar(c, Op::Ge, subj, lo) && scalar(c, Op::Le, subj, hi),
        _ => false,
    }
}

fn ordering_holds(op: Op, ord: Option<Ordering>) -> bool {
    let Some(ord) = ord else {
        return op == Op::Ne;
    };
    match op {
        Op::Eq => ord == Ordering::Equal,
        Op::Ne => ord != Ordering::Equal,
        Op::Lt => ord == Ordering::Less,
        Op::Le => ord != Ordering::Greater,
        Op::Gt => ord == Ordering::Greater,
        Op::Ge => ord != Ordering::Less,
        _ => false,
    }
}

fn scalar(c: &Cmp, op: Op, subj: &Subject<'_>, value: &Value) -> bool {
    match value {
        Value::Null => matches!(op, Op::Ne),
        Value::Bool(b) => match subj {
            Subject::Bool(s) => ordering_holds(op, Some(s.cmp(b))),
            Subject::Num(n) => ordering_holds(op, Some(u64::from(*b).cmp(n).reverse())),
            _ => op == Op::Ne,
        },
        Value::Int(i) => match subj {
            Subject::Num(n) => ordering_holds(op, Some(i128::from(*n).cmp(i))),
            Subject::Float(f) => ordering_holds(op, f.partial_cmp(&(*i as f64))),
            Subject::Str(s) => ordering_holds(
                op,
                s.trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(|v| v.partial_cmp(&(*i as f64))),
            ),
            _ => op == Op::Ne,
        },
        Value::Float(x) => match subj {
            Subject::Num(n) => ordering_holds(op, (*n as f64).partial_cmp(x)),
            Subject::Float(f) => ordering_holds(op, f.partial_cmp(x)),
            Subject::Str(s) => ordering_holds(
                op,
                s.trim().parse::<f64>().ok().and_then(|v| v.partial_cmp(x)),
            ),
            _ => op == Op::Ne,
        },
        Value::Str { folded, .. } => {
            let Some(text) = subject_text(subj) else {
                return op == Op::Ne;
            };
            match op {
                Op::Contains if c.literal_in_key => contains(&text, folded, c.opts),
                Op::Contains => contains(&text, folded, c.opts),
                Op::BeginsWith => fold(&text, c.opts).starts_with(folded.as_str()),
                Op::EndsWith => fold(&text, c.opts).ends_with(folded.as_str()),
                _ => ordering_holds(op, Some(fold(&text, c.opts).as_ref().cmp(folded.as_str()))),
            }
        }
        Value::Like(pattern) => {
            subject_text(subj).is_some_and(|t| like(&fold(&t, c.opts), pattern))
        }
        Value::Regex(re) => subject_text(subj).is_some_and(|t| {
            if c.opts.diacritic_insensitive {
                let folded = fold(
                    &t,
                    super::Opts {
                        case_insensitive: false,
                        diacritic_insensitive: true,
                    },
                );
                re.is_match(&folded)
            } else {
                re.is_match(&t)
            }
        }),
        Value::List(items) => items.iter().any(|v| scalar(c, op, subj, v)),
    }
}

#[cfg(test)]
mod tests {
    use crate::{LogEntry, Predicate};

    const ENTRY: &str = r#"{"timestamp":"2024-10-03 09:12:44.123456-0700","messageType":"Error","eventType":"logEvent","subsystem":"com.apple.SoftwareUpdateMacController","category":"SU","processImagePath":"\/usr\/libexec\/softwareupdated","senderImagePath":"\/System\/Library\/PrivateFrameworks\/SoftwareUpdateMacController.framework\/Versions\/A\/SoftwareUpdateMacController","processID":512,"threadID":6699,"activityIdentifier":0,"traceID":77,"eventMessage":"[SUMacControllerEventReporter] Sending event: otaDownloaded Café","signpostName":"Download","isSecure":true,"score":1.5}"#;

    fn m(p: &str) -> bool {
        let e = LogEntry::parse(ENTRY.as_bytes()).unwrap();
        let pred = Predicate::parse(p).unwrap_or_else(|err| panic!("{p}: {err}"));
        pred.matches(&e)
    }

    #[test]
    fn every_operator() {
        let yes = [
            r#"subsystem == "com.apple.SoftwareUpdateMacController""#,
            r#"subsystem = 'com.apple.SoftwareUpdateMacController'"#,
            r#"subsystem != "com.apple.mdmclient""#,
            r#"subsystem <> "x""#,
            r#"category < "TA" AND category <= "SU" AND category > "SA" AND category >= "SU""#,
            r#"category =< "SU" AND category => "SU""#,
            r#"eventMessage CONTAINS "otaDownloaded""#,
            r#"eventMessage BEGINSWITH "[SUMac""#,
            r#"eventMessage ENDSWITH "Café""#,
            r#"process LIKE "software*d""#,
            r#"process LIKE "softwareupdate?""#,
            r#"eventMessage MATCHES ".*Sending event: ota[A-Z][a-z]+.*""#,
            r#"process IN {"mdmclient", "softwareupdated"}"#,
            r#"processID IN {1, 512}"#,
            r#"processID BETWEEN {500, 600}"#,
            r#""softwareupdated" IN processImagePath"#,
            r#"process IN "softwareupdated softwareupdate""#,
            r#"processID == 512 AND processID < 513 AND processID >= 0x200"#,
            r#"threadID == 0x1a2b"#,
            r#"messageType == error"#,
            r#"messageType == 16"#,
            r#"logType >= error"#,
            r#"messageType == "Error""#,
            r#"eventType == logEvent AND eventType == 1024 AND type == "logEvent""#,
            r#"sender == "SoftwareUpdateMacController""#,
            r#"composedMessage CONTAINS "Sending""#,
            r#"signpostName == "Download""#,
            r#"isSecure == YES AND score > 1 AND score == 1.5"#,
            r#"bootUUID == nil AND processID != nil"#,
            r#"nosuchkey != "x" AND NOT nosuchkey == "x""#,
            r#"TRUEPREDICATE"#,
            r#"NOT FALSEPREDICATE"#,
            r#"512 == processID AND 600 > processID"#,
            r#"date > "2024-10-03 09:00:00""#,
        ];
        for p in yes {
            assert!(m(p), "should match: {p}");
        }
        let no = [
            r#"subsystem == "com.apple.softwareupdatemaccontroller""#,
            r#"eventMessage CONTAINS "OTADOWNLOADED""#,
            r#"eventMessage ENDSWITH "Cafe""#,
            r#"process LIKE "software""#,
            r#"eventMessage MATCHES "Sending""#,
            r#"process IN {"mdmclient"}"#,
            r#"processID BETWEEN {1, 2}"#,
            r#"messageType == fault"#,
            r#"messageType < error"#,
            r#"nosuchkey == "x""#,
            r#"nosuchkey CONTAINS "x""#,
            r#"FALSEPREDICATE"#,
            r#"processID > 512"#,
        ];
        for p in no {
            assert!(!m(p), "should not match: {p}");
        }
    }

    #[test]
    fn modifiers() {
        assert!(m(
            r#"subsystem ==[c] "com.apple.softwareupdatemaccontroller""#
        ));
        assert!(m(r#"eventMessage CONTAINS[c] "OTADOWNLOADED""#));
        assert!(m(r#"eventMessage ENDSWITH[d] "Cafe""#));
        assert!(m(r#"eventMessage ENDSWITH[cd] "CAFE""#));
        assert!(m(r#"process LIKE[c] "SOFTWARE*""#));
        assert!(m(r#"eventMessage MATCHES[c] ".*SENDING EVENT.*""#));
        assert!(m(r#"eventMessage MATCHES[cd] ".*cafe""#));
        assert!(m(r#"process IN[c] {"SOFTWAREUPDATED"}"#));
        assert!(m(r#"process BEGINSWITH[n] "soft""#));
        assert!(!m(r#"eventMessage ENDSWITH[c] "Cafe""#));
    }

    #[test]
    fn logic_and_precedence() {
        assert!(m(
            r#"process == "x" OR process == "softwareupdated" AND processID == 512"#
        ));
        assert!(!m(
            r#"(process == "x" OR process == "softwareupdated") AND processID == 1"#
        ));
        assert!(m(
            r#"!(process == "x") && (processID == 1 || processID == 512)"#
        ));
        assert!(m(r#"NOT NOT process == "softwareupdated""#));
    }
}
