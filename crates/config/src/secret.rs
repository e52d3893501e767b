//! Secret references, `${env:NAME}` and `${file:PATH}`, resolved at load time and
//! never printed.

use std::fmt;
use std::path::Path;

/// A resolved secret. `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub(crate) fn empty() -> Secret {
        Secret(String::new())
    }

    /// A secret from a value already resolved (tests and programmatic callers).
    pub fn from_value(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// Resolves a reference; the error names the reference, never a value.
    pub fn resolve(text: &str, base_dir: &Path) -> Result<Secret, String> {
        let inner = text
            .trim()
            .strip_prefix("${")
            .and_then(|t| t.strip_suffix('}'))
            .ok_or_else(|| {
                "must be a secret reference, ${env:NAME} or ${file:PATH}, not an inline value"
                    .to_owned()
            })?;
        let (scheme, arg) = inner.split_once(':').ok_or_else(|| {
            format!("{text:?} is not a secret reference (expected ${{env:NAME}} or ${{file:PATH}})")
        })?;
        match scheme {
            "env" => {
                if arg.is_empty() || !arg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!(
                        "{text:?}: {arg:?} is not an environment variable name"
                    ));
                }
                match std::env::var(arg) {
                    Ok(v) if !v.is_empty() => Ok(Secret(v)),
                    Ok(_) => Err(format!("{text:?}: environment variable {arg} is empty")),
                    Err(_) => Err(format!("{text:?}: environment variable {arg} is not set")),
                }
            }
            "file" => {
                if arg.is_empty() {
                    return Err(format!("{text:?}: the file path is empty"));
                }
                let path = base_dir.join(arg);
                match std::fs::read_to_string(&path) {
                    Ok(v) if !v.trim().is_empty() => {
                        Ok(Secret(v.trim_end_matches(['\n', '\r']).to_owned()))
                    }
                    Ok(_) => Err(format!("{text:?}: {} is empty", path.display())),
                    Err(e) => Err(format!("{text:?}: cannot read {}: {e}", path.display())),
                }
            }
            other => Err(format!(
                "{text:?}: unknown secret scheme {other:?} (expected env or file)"
            )),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_files_relative_to_the_config_and_redacts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "s3cret\n").unwrap();
        let s = Secret::resolve("${file:tok}", dir.path()).unwrap();
        assert_eq!(s.expose(), "s3cret");
        assert_eq!(format!("{s:?} {s}"), "Secret(<redacted>) <redacted>");
    }

    #[test]
    fn precise_errors() {
        let d = Path::new("/nonexistent");
        for (text, want) in [
            ("hunter2", "must be a secret reference"),
            ("${vault:x}", "unknown secret scheme \"vault\""),
            ("${env:}", "is not an environment variable name"),
            (
                "${env:FLEETBUS_SURELY_UNSET_VAR}",
                "FLEETBUS_SURELY_UNSET_VAR is not set",
            ),
            ("${file:missing}", "cannot read /nonexistent/missing"),
            ("${nocolon}", "is not a secret reference"),
        ] {
            let e = Secret::resolve(text, d).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
