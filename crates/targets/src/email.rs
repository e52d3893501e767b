//! The email target: one message per delivery over SMTP (STARTTLS, implicit TLS,
//! or plain for a local relay), with optional credentials.
//!
//! The subject is the target's `subject` template rendered against the matched
//! event with [`crate::transform::render_text`]: the reserved `aws.events.*`
//! names, top-level envelope fields (`<detail-type>`, `<source>`, `<id>`...) and
//! `<$.json.path>` placeholders. The body is the payload as text (JSON
//! pretty-printed). The Message-ID derives from the idempotency key, so a retried
//! delivery carries the same id and receivers can spot the duplicate.
//!
//! Outcome: SMTP 4xx replies, connection failures and timeouts are retryable;
//! 5xx replies (a refused recipient, failed authentication) are permanent.

use std::time::Duration;

use fleetbus_config::{Smtp, Tls};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::{BuildError, Delivered, DeliveryContext, DeliveryError, Payload};

pub struct EmailTarget {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    subject: String,
    timeout: Duration,
}

impl std::fmt::Debug for EmailTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailTarget")
            .field("from", &self.from.to_string())
            .field("to", &self.to.len())
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl EmailTarget {
    pub(crate) fn new(
        id: &str,
        smtp: &Smtp,
        from: &str,
        to: &[String],
        subject: &str,
        timeout: Duration,
    ) -> Result<EmailTarget, BuildError> {
        crate::tls::ensure_provider();
        let address = |a: &str| {
            a.parse::<Mailbox>()
                .map_err(|e| BuildError::InvalidAddress {
                    target: id.to_owned(),
                    address: a.to_owned(),
                    reason: e.to_string(),
                })
        };
        let from = address(from)?;
        let to = to
            .iter()
            .map(|a| address(a))
            .collect::<Result<Vec<_>, _>>()?;
        if to.is_empty() {
            return Err(BuildError::Other {
                target: id.to_owned(),
                reason: "no recipients (to is empty)".into(),
            });
        }
        let tls_error = |e: lettre::transport::smtp::Error| BuildError::Other {
            target: id.to_owned(),
            reason: format!("cannot set up TLS for SMTP host {:?}: {e}", smtp.host),
        };
        let mut builder = match smtp.tls {
            Tls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
                .map_err(tls_error)?,
            Tls::Implicit => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host).map_err(tls_error)?
            }
            Tls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
        }
        .port(smtp.port)
        .timeout(Some(timeout));
        if let Some((user, password)) = &smtp.credentials {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        Ok(EmailTarget {
            transport: builder.build(),
            from,
            to,
            subject: subject.to_owned(),
            timeout,
        })
    }

    pub(crate) async fn deliver(
        &self,
        payload: &Payload,
        ctx: &DeliveryContext<'_>,
    ) -> Result<Delivered, DeliveryError> {
        let subject = crate::transform::render_text(&self.subject, ctx.event, ctx.rule);
        // Headers are one line: fold whatever a template put in.
        let subject: String = subject
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(message_id(ctx.idempotency_key)))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let message = builder
            .body(payload.to_text())
            .map_err(|e| DeliveryError::Permanent(format!("cannot build the message: {e}")))?;
        let sent = tokio::time::timeout(self.timeout, self.transport.send(message)).await;
        match sent {
            Err(_) => Err(DeliveryError::Retryable(format!(
                "smtp timed out after {:?}",
                self.timeout
            ))),
            Ok(Ok(response)) => Ok(Delivered {
                status: format!("smtp {}", response.code()),
                emitted: Vec::new(),
            }),
            Ok(Err(e)) => {
                let msg = format!("smtp: {e}");
                if e.is_permanent() {
                    Err(DeliveryError::Permanent(msg))
                } else {
                    Err(DeliveryError::Retryable(msg))
                }
            }
        }
    }
}

/// `<key@fleetbus>` with the key reduced to characters a Message-ID allows.
fn message_id(key: &str) -> String {
    let left: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '.'
            }
        })
        .collect();
    let left = left.trim_matches('.');
    format!(
        "<{}@fleetbus>",
        if left.is_empty() { "event" } else { left }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_well_formed() {
        assert_eq!(message_id("abc-1:rule:t"), "<abc-1.rule.t@fleetbus>");
        assert_eq!(message_id("::"), "<event@fleetbus>");
    }

    #[test]
    fn bad_addresses_are_build_errors() {
        let smtp = Smtp {
            host: "127.0.0.1".into(),
            port: 25,
            tls: Tls::None,
            credentials: None,
        };
        let t = |from: &str, to: &[String]| {
            EmailTarget::new("e", &smtp, from, to, "s", Duration::from_secs(1))
        };
        assert!(matches!(
            t("not an address", &["a@example.com".into()]),
            Err(BuildError::InvalidAddress { .. })
        ));
        assert!(t("fleetbus <bot@example.com>", &[]).is_err());
        assert!(t("fleetbus <bot@example.com>", &["a@example.com".into()]).is_ok());
        let starttls = Smtp {
            tls: Tls::StartTls,
            ..smtp.clone()
        };
        assert!(EmailTarget::new(
            "e",
            &starttls,
            "bot@example.com",
            &["a@example.com".into()],
            "s",
            Duration::from_secs(1)
        )
        .is_ok());
    }
}
