//! Leaf conditions (one element of a pattern's value array) and how each one tests a
//! single scalar event value.

use std::fmt;
use std::net::IpAddr;

/// Numeric operands and event values are compared at EventBridge's precision: six digits
/// right of the decimal point, within +/- 5.0e9.
pub const NUMERIC_LIMIT: f64 = 5.0e9;

/// A scalar event value as seen by a condition. Strings are unescaped UTF-8.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar<'a> {
    /// A JSON string.
    Str(&'a str),
    /// A JSON number (already parsed).
    Num(f64),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
}

impl fmt::Display for Scalar<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Str(s) => write!(f, "{}", serde_json::Value::String((*s).to_owned())),
            Scalar::Num(n) => write!(f, "{n}"),
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Null => f.write_str("null"),
        }
    }
}

/// Converts a number to EventBridge's fixed-point comparison form (millionths), or `None`
/// outside the supported range.
pub fn to_micro(x: f64) -> Option<i64> {
    if x.is_finite() && x.abs() <= NUMERIC_LIMIT {
        // Within range |x * 1e6| <= 5e15 < 2^53, so the rounding is exact enough.
        Some((x * 1e6).round() as i64)
    } else {
        None
    }
}

/// Key for exact numeric equality, consistent with [`num_eq`]: 300, 3.0e2 and 300.0
/// share one key.
pub fn num_key(x: f64) -> (bool, u64) {
    match to_micro(x) {
        Some(m) => (true, m as u64),
        None => (false, x.to_bits()),
    }
}

/// Simple case folding used by `equals-ignore-case`.
pub fn fold_case(s: &str) -> String {
    if s.is_ascii() {
        s.to_ascii_lowercase()
    } else {
        s.to_lowercase()
    }
}

/// One condition of a leaf's OR list.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// Exact string.
    Str(String),
    /// Numeric equality with a number literal.
    Num(f64),
    /// `true` / `false` literal.
    Bool(bool),
    /// `null` literal.
    Null,
    /// `{"prefix": "..."}`.
    Prefix(String),
    /// `{"suffix": "..."}`.
    Suffix(String),
    /// `{"equals-ignore-case": "..."}`, operand already folded.
    EqIc(String),
    /// `{"prefix": {"equals-ignore-case": "..."}}`, operand already folded.
    PrefixIc(String),
    /// `{"suffix": {"equals-ignore-case": "..."}}`, operand already folded.
    SuffixIc(String),
    /// `{"wildcard": "..."}`.
    Wildcard(Wildcard),
    /// `{"anything-but": ...}`.
    AnythingBut(AnythingBut),
    /// `{"numeric": [...]}`.
    Numeric(NumRange),
    /// `{"cidr": "..."}`.
    Cidr(Cidr),
    /// `{"exists": true|false}`.
    Exists(bool),
}

impl Cond {
    /// Whether this condition accepts the scalar. `Exists(true)` accepts any scalar;
    /// `Exists(false)` accepts none (absence is decided by the caller).
    pub fn matches(&self, v: Scalar<'_>) -> bool {
        match (self, v) {
            (Cond::Str(a), Scalar::Str(b)) => a == b,
            (Cond::Num(a), Scalar::Num(b)) => num_eq(*a, b),
            (Cond::Bool(a), Scalar::Bool(b)) => *a == b,
            (Cond::Null, Scalar::Null) => true,
            (Cond::Prefix(p), Scalar::Str(s)) => s.starts_with(p.as_str()),
            (Cond::Suffix(p), Scalar::Str(s)) => s.ends_with(p.as_str()),
            (Cond::EqIc(p), Scalar::Str(s)) => fold_case(s) == *p,
            (Cond::PrefixIc(p), Scalar::Str(s)) => fold_case(s).starts_with(p.as_str()),
            (Cond::SuffixIc(p), Scalar::Str(s)) => fold_case(s).ends_with(p.as_str()),
            (Cond::Wildcard(w), Scalar::Str(s)) => w.matches(s),
            (Cond::AnythingBut(a), v) => a.matches(v),
            (Cond::Numeric(r), Scalar::Num(n)) => r.matches(n),
            (Cond::Cidr(c), Scalar::Str(s)) => c.matches(s),
            (Cond::Exists(e), _) => *e,
            _ => false,
        }
    }
}

impl fmt::Display for Cond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
        match self {
            Cond::Str(s) => f.write_str(&q(s)),
            Cond::Num(n) => write!(f, "{n}"),
            Cond::Bool(b) => write!(f, "{b}"),
            Cond::Null => f.write_str("null"),
            Cond::Prefix(p) => write!(f, "prefix {}", q(p)),
            Cond::Suffix(p) => write!(f, "suffix {}", q(p)),
            Cond::EqIc(p) => write!(f, "equals-ignore-case {}", q(p)),
            Cond::PrefixIc(p) => write!(f, "prefix (ignoring case) {}", q(p)),
            Cond::SuffixIc(p) => write!(f, "suffix (ignoring case) {}", q(p)),
            Cond::Wildcard(w) => write!(f, "wildcard {}", q(&w.source)),
            Cond::AnythingBut(a) => write!(f, "anything-but {a}"),
            Cond::Numeric(r) => write!(f, "numeric {r}"),
            Cond::Cidr(c) => write!(f, "cidr {}", q(&c.source)),
            Cond::Exists(e) => write!(f, "exists {e}"),
        }
    }
}

/// Numeric equality across notations (300 == 3.0e2).
pub fn num_eq(a: f64, b: f64) -> bool {
    match (to_micro(a), to_micro(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// A compiled `wildcard` operand: literal segments separated by `*`.
#[derive(Debug, Clone, PartialEq)]
pub struct Wildcard {
    /// The operand as written.
    pub source: String,
    /// Literal pieces between stars (escapes resolved).
    segments: Vec<String>,
    /// Whether the operand starts / ends with an unescaped `*`.
    lead_star: bool,
    trail_star: bool,
}

impl Wildcard {
    /// Parses `*` (any run of characters), `\*` (a literal star) and `\\` (a literal
    /// backslash). Consecutive stars and other escapes are rejected, as EventBridge does.
    pub fn parse(source: &str) -> Result<Wildcard, String> {
        let mut segments = vec![String::new()];
        let mut chars = source.chars().peekable();
        let mut prev_star = false;
        let mut lead_star = false;
        let mut first = true;
        while let Some(c) = chars.next() {
            match c {
                '*' => {
                    if prev_star {
                        return Err(format!(
                            "wildcard {source:?} has consecutive '*' characters"
                        ));
                    }
                    if first {
                        lead_star = true;
                    } else {
                        segments.push(String::new());
                    }
                    prev_star = true;
                }
                '\\' => {
                    let esc = chars.next();
                    match esc {
                        Some(e @ ('*' | '\\')) => {
                            if let Some(seg) = segments.last_mut() {
                                seg.push(e);
                            }
                        }
                        _ => {
                            return Err(format!(
                                "wildcard {source:?} has an invalid escape (only \\* and \\\\ are allowed)"
                            ))
                        }
                    }
                    prev_star = false;
                }
                c => {
                    if let Some(seg) = segments.last_mut() {
                        seg.push(c);
                    }
                    prev_star = false;
                }
            }
            first = false;
        }
        let trail_star = prev_star;
        if trail_star && segments.len() > 1 {
            // The star at the end opened an empty trailing segment: drop it.
            segments.pop();
        }
        if lead_star && segments.first().is_some_and(|s| s.is_empty()) && segments.len() > 1 {
            segments.remove(0);
        }
        Ok(Wildcard {
            source: source.to_owned(),
            segments,
            lead_star,
            trail_star,
        })
    }

    /// Glob match: anchored at both ends unless a star is there.
    pub fn matches(&self, s: &str) -> bool {
        let segs = &self.segments;
        if !self.lead_star && !self.trail_star && segs.len() == 1 {
            return s == segs[0];
        }
        let mut rest = s;
        let mut lo = 0;
        let mut hi = segs.len();
        if !self.lead_star {
            let Some(first) = segs.first() else {
                return rest.is_empty();
            };
            match rest.strip_prefix(first.as_str()) {
                Some(r) => rest = r,
                None => return false,
            }
            lo = 1;
        }
        if !self.trail_star {
            if hi <= lo {
                // Pattern like "abc" was handled; here the only segment was the prefix.
                return rest.is_empty();
            }
            let last = &segs[hi - 1];
            match rest.strip_suffix(last.as_str()) {
                Some(r) => rest = r,
                None => return false,
            }
            hi -= 1;
        }
        // Middle segments: leftmost greedy search is optimal for '*'-only globs.
        for seg in &segs[lo..hi] {
            match rest.find(seg.as_str()) {
                Some(pos) => rest = &rest[pos + seg.len()..],
                None => return false,
            }
        }
        true
    }
}

/// The forms of `anything-but`.
#[derive(Debug, Clone, PartialEq)]
pub enum AnythingBut {
    /// A scalar or a list of strings / numbers (and booleans or null).
    Values(Vec<Cond>),
    /// Strings not starting with any of these.
    Prefix(Vec<String>),
    /// Strings not ending with any of these.
    Suffix(Vec<String>),
    /// Strings matching none of these globs.
    Wildcard(Vec<Wildcard>),
    /// Strings equal (ignoring case) to none of these (folded).
    EqIc(Vec<String>),
}

impl AnythingBut {
    /// The value list form accepts any scalar type that is not listed; the operator forms
    /// accept only strings.
    pub fn matches(&self, v: Scalar<'_>) -> bool {
        match (self, v) {
            (AnythingBut::Values(vals), v) => !vals.iter().any(|c| c.matches(v)),
            (AnythingBut::Prefix(ps), Scalar::Str(s)) => {
                !ps.iter().any(|p| s.starts_with(p.as_str()))
            }
            (AnythingBut::Suffix(ps), Scalar::Str(s)) => {
                !ps.iter().any(|p| s.ends_with(p.as_str()))
            }
            (AnythingBut::Wildcard(ws), Scalar::Str(s)) => !ws.iter().any(|w| w.matches(s)),
            (AnythingBut::EqIc(ps), Scalar::Str(s)) => {
                let f = fold_case(s);
                !ps.contains(&f)
            }
            _ => false,
        }
    }
}

impl fmt::Display for AnythingBut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
            f.write_str("[")?;
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{it}")?;
            }
            f.write_str("]")
        }
        let q = |v: &[String]| -> Vec<Cond> { v.iter().map(|s| Cond::Str(s.clone())).collect() };
        match self {
            AnythingBut::Values(v) => list(f, v),
            AnythingBut::Prefix(v) => {
                f.write_str("prefix ")?;
                list(f, &q(v))
            }
            AnythingBut::Suffix(v) => {
                f.write_str("suffix ")?;
                list(f, &q(v))
            }
            AnythingBut::Wildcard(v) => {
                f.write_str("wildcard ")?;
                let s: Vec<String> = v.iter().map(|w| w.source.clone()).collect();
                list(f, &q(&s))
            }
            AnythingBut::EqIc(v) => {
                f.write_str("equals-ignore-case ")?;
                list(f, &q(v))
            }
        }
    }
}

/// A numeric range in millionths; bounds are inclusive/exclusive as flagged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumRange {
    /// Lower bound and whether it is inclusive.
    pub lower: Option<(i64, bool)>,
    /// Upper bound and whether it is inclusive.
    pub upper: Option<(i64, bool)>,
}

impl NumRange {
    /// Event numbers outside EventBridge's range never match a numeric condition.
    pub fn matches(&self, x: f64) -> bool {
        let Some(m) = to_micro(x) else {
            return false;
        };
        if let Some((lo, inc)) = self.lower {
            if m < lo || (m == lo && !inc) {
                return false;
            }
        }
        if let Some((hi, inc)) = self.upper {
            if m > hi || (m == hi && !inc) {
                return false;
            }
        }
        true
    }
}

impl fmt::Display for NumRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = |m: i64| m as f64 / 1e6;
        match (self.lower, self.upper) {
            (Some((a, true)), Some((b, true))) if a == b => write!(f, "= {}", n(a)),
            _ => {
                let mut parts = Vec::new();
                if let Some((a, inc)) = self.lower {
                    parts.push(format!("{} {}", if inc { ">=" } else { ">" }, n(a)));
                }
                if let Some((b, inc)) = self.upper {
                    parts.push(format!("{} {}", if inc { "<=" } else { "<" }, n(b)));
                }
                f.write_str(&parts.join(" and "))
            }
        }
    }
}

/// An IPv4 or IPv6 network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cidr {
    /// The operand as written.
    pub source: String,
    net: IpAddr,
    len: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` or `x:y::z/n`.
    pub fn parse(source: &str) -> Result<Cidr, String> {
        let (ip, len) = source
            .split_once('/')
            .ok_or_else(|| format!("cidr {source:?} needs a /prefix-length"))?;
        let net: IpAddr = ip
            .parse()
            .map_err(|_| format!("cidr {source:?} has an invalid IP address"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let len: u8 = len
            .parse()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("cidr {source:?} has an invalid prefix length"))?;
        Ok(Cidr {
            source: source.to_owned(),
            net,
            len,
        })
    }

    /// Whether `s` is an IP address of the same family inside the network.
    pub fn matches(&self, s: &str) -> bool {
        let Ok(ip) = s.parse::<IpAddr>() else {
            return false;
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                prefix_eq(&n.octets(), &a.octets(), usize::from(self.len))
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                prefix_eq(&n.octets(), &a.octets(), usize::from(self.len))
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: usize) -> bool {
    let full = bits / 8;
    if a[..full] != b[..full] {
        return false;
    }
    let rem = bits % 8;
    if rem == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rem);
    (a[full] & mask) == (b[full] & mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_forms() {
        let w = |p: &str| Wildcard::parse(p).unwrap();
        assert!(w("j*@example.com").matches("jdoe@example.com"));
        assert!(!w("j*@example.com").matches("adoe@example.com"));
        assert!(w("*").matches(""));
        assert!(w("*").matches("abc"));
        assert!(w("a*").matches("a"));
        assert!(w("*a").matches("ba"));
        assert!(!w("*a").matches("ab"));
        assert!(w("tmp-*-*").matches("tmp-a-b"));
        assert!(w("tmp-*-*").matches("tmp--"));
        assert!(!w("tmp-*-*").matches("tmp-a"));
        assert!(w("a*b*c").matches("abc"));
        assert!(w("a*b*c").matches("aXbYbZc"));
        assert!(!w("a*b*c").matches("acb"));
        assert!(!w("ab*ba").matches("aba"));
        assert!(w(r"a\*b").matches("a*b"));
        assert!(!w(r"a\*b").matches("axb"));
        assert!(w(r"a\\*").matches(r"a\xyz"));
        assert!(w("").matches(""));
        assert!(!w("").matches("x"));
        assert!(Wildcard::parse("a**b").is_err());
        assert!(Wildcard::parse(r"a\b").is_err());
        assert!(Wildcard::parse("a\\").is_err());
    }

    #[test]
    fn cidr_v4_v6() {
        let c = Cidr::parse("10.0.0.0/24").unwrap();
        assert!(c.matches("10.0.0.255"));
        assert!(!c.matches("10.0.1.0"));
        assert!(!c.matches("not an ip"));
        let c = Cidr::parse("2001:db8::/32").unwrap();
        assert!(c.matches("2001:db8:1::1"));
        assert!(!c.matches("2001:db9::1"));
        assert!(!c.matches("10.0.0.1"));
        let c = Cidr::parse("10.1.2.3/31").unwrap();
        assert!(c.matches("10.1.2.2"));
        assert!(!c.matches("10.1.2.4"));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("10.0.0.0").is_err());
    }

    #[test]
    fn numeric_precision() {
        assert!(num_eq(300.0, 3.0e2));
        assert!(num_eq(0.1 + 0.2, 0.3));
        let r = NumRange {
            lower: Some((0, false)),
            upper: None,
        };
        assert!(r.matches(0.000001));
        assert!(!r.matches(0.0000001));
        assert!(!r.matches(6e9));
    }
}
