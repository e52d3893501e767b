//! String folding for the `[c]` and `[d]` modifiers, and `LIKE` wildcard matching.

use std::borrow::Cow;

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

use super::Opts;

/// Folds `s` as the modifiers ask: `[d]` strips diacritics (canonical decomposition minus
/// combining marks), `[c]` lower-cases (Unicode).
pub(crate) fn fold(s: &str, opts: Opts) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(s);
    if opts.diacritic_insensitive && !s.is_ascii() {
        out = Cow::Owned(s.nfd().filter(|c| !is_combining_mark(*c)).collect());
    }
    if opts.case_insensitive && out.chars().any(|c| c.is_uppercase() || !c.is_ascii()) {
        out = Cow::Owned(out.to_lowercase());
    }
    out
}

/// `hay CONTAINS needle` where `needle` is already folded.
pub(crate) fn contains(hay: &str, needle: &str, opts: Opts) -> bool {
    if opts.case_insensitive && !opts.diacritic_insensitive && hay.is_ascii() && needle.is_ascii() {
        return contains_ascii_ci(hay.as_bytes(), needle.as_bytes());
    }
    fold(hay, opts).contains(needle)
}

/// ASCII case-insensitive substring search; `needle` is lower-case.
fn contains_ascii_ci(hay: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else {
        return true;
    };
    if needle.len() > hay.len() {
        return false;
    }
    let upper = first.to_ascii_uppercase();
    let last_start = hay.len() - needle.len();
    let mut from = 0;
    while from <= last_start {
        let Some(p) = memchr::memchr2(first, upper, &hay[from..=last_start]) else {
            return false;
        };
        let at = from + p;
        if hay[at..at + needle.len()].eq_ignore_ascii_case(needle) {
            return true;
        }
        from = at + 1;
    }
    false
}

/// One element of a `LIKE` pattern.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LikeTok {
    /// `*`: any run of characters.
    Star,
    /// `?`: exactly one character.
    One,
    Char(char),
}

/// Compiles a (folded) `LIKE` pattern; `\*` and `\?` are literal.
pub(crate) fn compile_like(pattern: &str) -> Vec<LikeTok> {
    let mut out = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => {
                if out.last() != Some(&LikeTok::Star) {
                    out.push(LikeTok::Star);
                }
            }
            '?' => out.push(LikeTok::One),
            '\\' => match chars.next() {
                Some(n) => out.push(LikeTok::Char(n)),
                None => out.push(LikeTok::Char('\\')),
            },
            other => out.push(LikeTok::Char(other)),
        }
    }
    out
}

/// Whole-string wildcard match, linear in practice (single backtrack point per star).
pub(crate) fn like(subject: &str, pattern: &[LikeTok]) -> bool {
    let s: Vec<char> = subject.chars().collect();
    let (mut si, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match pattern.get(pi) {
            Some(LikeTok::Star) => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(LikeTok::One) => {
                si += 1;
                pi += 1;
            }
            Some(LikeTok::Char(c)) if *c == s[si] => {
                si += 1;
                pi += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    pattern[pi.min(pattern.len())..]
        .iter()
        .all(|t| *t == LikeTok::Star)
}

/// The literal runs of a `LIKE` pattern (text between wildcards).
pub(crate) fn like_runs(pattern: &[LikeTok]) -> Vec<String> {
    let mut runs = vec![String::new()];
    for t in pattern {
        match t {
            LikeTok::Char(c) => {
                if let Some(last) = runs.last_mut() {
                    last.push(*c);
                }
            }
            _ => runs.push(String::new()),
        }
    }
    runs.retain(|r| !r.is_empty());
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    const CI: Opts = Opts {
        case_insensitive: true,
        diacritic_insensitive: false,
    };
    const CD: Opts = Opts {
        case_insensitive: true,
        diacritic_insensitive: true,
    };

    #[test]
    fn folding() {
        assert_eq!(fold("Café", CD), "cafe");
        assert_eq!(fold("ÉCOLE", CI), "école");
        assert_eq!(fold("plain", Opts::default()), "plain");
    }

    #[test]
    fn ascii_ci_contains() {
        assert!(contains("Sending event otaDownloaded", "ota", CI));
        assert!(contains("OTA", "ota", CI));
        assert!(!contains("oat", "ota", CI));
        assert!(contains("", "", CI));
        assert!(contains("Über OTA", "über ota", CI));
    }

    #[test]
    fn like_wildcards() {
        let p = compile_like("com.apple.*update?");
        assert!(like("com.apple.softwareupdated", &p));
        assert!(!like("com.apple.softwareupdate", &p));
        assert!(like("", &compile_like("*")));
        assert!(!like("a", &compile_like("")));
        assert!(like("a*b", &compile_like("a\\*b")));
        assert!(!like("axb", &compile_like("a\\*b")));
        assert!(like("aaab", &compile_like("*a*b")));
        assert_eq!(like_runs(&compile_like("*ab?cd*e")), ["ab", "cd", "e"]);
    }
}
