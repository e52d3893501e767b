//! `kind: email`: an SMTP server, sender, recipients and a subject template.

use crate::ca::CaCerts;
use crate::kinds::Env;
use crate::load::Origin;
use crate::model::{Smtp, TargetSpec, Tls};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::validate::{key, require, Ctx};

/// The fields of an `email` target.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEmail {
    /// SMTP server.
    smtp: Option<RawSmtp>,
    /// Sender address.
    from: Option<String>,
    /// Recipients.
    to: Option<Vec<String>>,
    /// Subject template, rendered against the matched event: `<detail-type>`,
    /// `<source>`, `<account>`, `<region>`... (top-level fields), `<$.json.path>`,
    /// and the reserved `<aws.events.rule-name>`.
    subject: Option<String>,
}

/// An SMTP server.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSmtp {
    /// The SMTP server's host name.
    host: String,
    /// Its port (default 587 for `starttls`, 465 for `tls`, 25 for `none`).
    port: Option<u16>,
    /// `starttls` (default), `tls` (implicit) or `none`.
    tls: Option<String>,
    /// The user for SMTP AUTH.
    username: Option<String>,
    /// The password for SMTP AUTH (a secret reference).
    password: Option<String>,
    /// PEM file of one or more CA certificates (relative to the config file). When
    /// set, these alone are trusted for the server's certificate, instead of the
    /// platform's roots (like `curl --cacert`). Needs `tls: starttls` or `tls`.
    ca_file: Option<String>,
}

/// Validates a target of this kind.
pub(crate) fn validate(fields: Value, o: &Origin, env: &Env<'_>, cx: &mut Ctx<'_>) -> TargetSpec {
    let t: RawEmail = crate::kinds::read(fields, o, cx);
    require(cx, o, env.name, "smtp", t.smtp.is_some());
    require(cx, o, env.name, "from", t.from.is_some());
    require(
        cx,
        o,
        env.name,
        "to",
        t.to.as_ref().is_some_and(|v| !v.is_empty()),
    );
    let smtp = t.smtp.as_ref().map(|s| {
        let so = o.child(key("smtp"));
        let tls = match s.tls.as_deref() {
            None | Some("starttls") => Tls::StartTls,
            Some("tls") => Tls::Implicit,
            Some("none") => Tls::None,
            Some(other) => {
                cx.errors.push(so.error(
                    &[key("tls")],
                    format!(
                        "unknown value {other:?} (expected one of starttls, tls, none)"
                    ),
                ));
                Tls::StartTls
            }
        };
        let port = s.port.unwrap_or(match tls {
            Tls::Implicit => 465,
            Tls::StartTls => 587,
            Tls::None => 25,
        });
        let credentials = match (&s.username, &s.password) {
            (Some(u), Some(p)) => Some((u.clone(), cx.secret(&so, &[key("password")], p))),
            (None, None) => None,
            _ => {
                cx.errors
                    .push(so.error(&[], "username and password go together"));
                None
            }
        };
        let ca = s.ca_file.as_deref().and_then(|f| {
            if tls == Tls::None {
                cx.errors.push(so.error(
                    &[key("ca_file")],
                    "has no effect with tls: none (a plain connection checks no certificate; use starttls or tls)",
                ));
                return None;
            }
            match CaCerts::read(&cx.base_dir.join(f)) {
                Ok(ca) => Some(ca),
                Err(msg) => {
                    cx.errors.push(so.error(&[key("ca_file")], msg));
                    None
                }
            }
        });
        Smtp {
            host: s.host.clone(),
            port,
            tls,
            credentials,
            ca,
        }
    });
    TargetSpec::Email {
        smtp: smtp.unwrap_or(Smtp {
            host: String::new(),
            port: 0,
            tls: Tls::None,
            credentials: None,
            ca: None,
        }),
        from: t.from.clone().unwrap_or_default(),
        to: t.to.clone().unwrap_or_default(),
        subject: t
            .subject
            .clone()
            .unwrap_or_else(|| "fleetbus: <detail-type>".into()),
    }
}
