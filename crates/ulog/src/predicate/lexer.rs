//! Tokens of the NSPredicate syntax `log --predicate` accepts, with 1-based columns.

use crate::error::PredicateError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    Str(String),
    Int(i128),
    Float(f64),
    /// Operators and punctuation, normalised (`=` is `==`, `<>` is `!=`, `=<` is `<=`,
    /// `=>` is `>=`, `&&` is `AND`, `||` is `OR`, `!` is `NOT`).
    Punct(&'static str),
    End,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub column: usize,
}

pub(crate) fn lex(input: &str) -> Result<Vec<Token>, PredicateError> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let punct2 = match two.as_str() {
            "==" => Some("=="),
            "!=" | "<>" => Some("!="),
            "<=" | "=<" => Some("<="),
            ">=" | "=>" => Some(">="),
            "&&" => Some("AND"),
            "||" => Some("OR"),
            _ => None,
        };
        if let Some(p) = punct2 {
            out.push(Token {
                tok: Tok::Punct(p),
                column,
            });
            i += 2;
            continue;
        }
        let punct1 = match c {
            '=' => Some("=="),
            '<' => Some("<"),
            '>' => Some(">"),
            '!' => Some("NOT"),
            '(' => Some("("),
            ')' => Some(")"),
            '{' => Some("{"),
            '}' => Some("}"),
            '[' => Some("["),
            ']' => Some("]"),
            ',' => Some(","),
            _ => None,
        };
        if let Some(p) = punct1 {
            out.push(Token {
                tok: Tok::Punct(p),
                column,
            });
            i += 1;
            continue;
        }
        if c == '"' || c == '\'' {
            let (s, next) = lex_string(&chars, i)?;
            out.push(Token {
                tok: Tok::Str(s),
                column,
            });
            i = next;
            continue;
        }
        let negative_number = c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit());
        if c.is_ascii_digit() || negative_number {
            let (tok, next) = lex_number(&chars, i)?;
            out.push(Token { tok, column });
            i = next;
            continue;
        }
        if c.is_alphabetic() || c == '_' || c == '$' || c == '@' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '$' | '@' | '.'))
            {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Ident(chars[start..i].iter().collect()),
                column,
            });
            continue;
        }
        return Err(PredicateError::new(
            column,
            format!("unexpected character `{c}`"),
        ));
    }
    out.push(Token {
        tok: Tok::End,
        column: chars.len() + 1,
    });
    Ok(out)
}

fn lex_string(chars: &[char], start: usize) -> Result<(String, usize), PredicateError> {
    let quote = chars[start];
    let mut s = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        let c = chars[i];
        if c == quote {
            return Ok((s, i + 1));
        }
        if c == '\\' {
            let Some(&e) = chars.get(i + 1) else {
                break;
            };
            match e {
                'n' => s.push('\n'),
                't' => s.push('\t'),
                'r' => s.push('\r'),
                '0' => s.push('\0'),
                '\\' | '"' | '\'' => s.push(e),
                'u' => {
                    let hex: String = chars.get(i + 2..i + 6).unwrap_or(&[]).iter().collect();
                    let ch = u32::from_str_radix(&hex, 16)
                        .ok()
                        .filter(|_| hex.len() == 4)
                        .and_then(char::from_u32)
                        .ok_or_else(|| {
                            PredicateError::new(i + 1, format!("invalid escape `\\u{hex}`"))
                        })?;
                    s.push(ch);
                    i += 6;
                    continue;
                }
                // Other escapes are kept as written so regexes like `\d` survive.
                other => {
                    s.push('\\');
                    s.push(other);
                }
            }
            i += 2;
            continue;
        }
        s.push(c);
        i += 1;
    }
    Err(PredicateError::new(
        start + 1,
        format!("unterminated string starting with {quote}"),
    ))
}

fn lex_number(chars: &[char], start: usize) -> Result<(Tok, usize), PredicateError> {
    let mut i = start;
    if chars[i] == '-' {
        i += 1;
    }
    let hex = chars.get(i) == Some(&'0') && matches!(chars.get(i + 1), Some('x' | 'X'));
    if hex {
        i += 2;
    }
    let body_start = i;
    while i < chars.len()
        && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == '_')
    {
        i += 1;
    }
    let text: String = chars[start..i].iter().collect();
    let body: String = chars[body_start..i].iter().collect();
    let negative = chars[start] == '-';
    let bad = || PredicateError::new(start + 1, format!("invalid number `{text}`"));
    let tok = if hex {
        let v = i128::from_str_radix(&body, 16).map_err(|_| bad())?;
        Tok::Int(if negative { -v } else { v })
    } else if let Ok(v) = text.parse::<i128>() {
        Tok::Int(v)
    } else {
        let v = text.parse::<f64>().map_err(|_| bad())?;
        if !v.is_finite() {
            return Err(bad());
        }
        Tok::Float(v)
    };
    Ok((tok, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn operators_normalise() {
        assert_eq!(
            toks("a = 1 && b <> 'x' || !c =< 0x1F"),
            vec![
                Tok::Ident("a".into()),
                Tok::Punct("=="),
                Tok::Int(1),
                Tok::Punct("AND"),
                Tok::Ident("b".into()),
                Tok::Punct("!="),
                Tok::Str("x".into()),
                Tok::Punct("OR"),
                Tok::Punct("NOT"),
                Tok::Ident("c".into()),
                Tok::Punct("<="),
                Tok::Int(31),
                Tok::End,
            ]
        );
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(toks(r#""a\"b\\c\d""#)[0], Tok::Str(r#"a"b\c\d"#.into()));
        assert_eq!(toks(r"'\u00e9'")[0], Tok::Str("é".into()));
        let err = lex("process == \"abc").unwrap_err();
        assert_eq!(err.column, 12);
    }

    #[test]
    fn numbers() {
        assert_eq!(toks("-12 1.5")[..2], [Tok::Int(-12), Tok::Float(1.5)]);
        assert_eq!(lex("1.2.3").unwrap_err().column, 1);
    }
}
