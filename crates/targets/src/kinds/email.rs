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
//! TLS: `starttls` requires the upgrade (a server that does not offer it is an
//! error, never a plain fallback); `tls` speaks TLS from the first byte. The
//! server's certificate must be valid for `host` (a name or an IP address) and
//! chain to a trusted root: the platform's roots, or, when the smtp block has a
//! `ca_file`, only the certificates in that file (like `curl --cacert`: a private
//! CA does not widen trust to every public CA, and a public server is refused
//! unless its root is in the file). The file is read and checked when the config
//! loads.
//!
//! Outcome: SMTP 4xx replies, connection failures and timeouts are retryable;
//! 5xx replies (a refused recipient, failed authentication) are permanent, and so
//! is a server certificate that fails verification (unknown issuer, wrong name,
//! bad signature): retrying will not change the certificate or the trust
//! settings, so the delivery goes to the dead-letter queue at once, to be redriven
//! once the certificate or `ca_file` is fixed. A certificate outside its validity
//! period is retryable: a renewal (or a host clock set right) fixes it without
//! anyone touching fleetbus. The error names the certificate problem.

use super::{BuildContext, Deliver, DeliverFuture};
use fleetbus_config::{Target, TargetSpec};

use std::path::PathBuf;
use std::time::Duration;

use fleetbus_config::{Smtp, Tls};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{
    Certificate, CertificateStore, Tls as SmtpTls, TlsParameters,
};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::{BuildError, Delivered, DeliveryContext, DeliveryError, Payload};

pub struct EmailTarget {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    subject: String,
    timeout: Duration,
    /// `host:port`, for error messages.
    server: String,
    /// The `ca_file` whose certificates alone are trusted, if any.
    ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for EmailTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailTarget")
            .field("from", &self.from.to_string())
            .field("to", &self.to.len())
            .field("subject", &self.subject)
            .field("server", &self.server)
            .field("ca_file", &self.ca_file)
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
        let tls = match smtp.tls {
            Tls::None => SmtpTls::None,
            Tls::StartTls => SmtpTls::Required(tls_parameters(smtp).map_err(tls_error)?),
            Tls::Implicit => SmtpTls::Wrapper(tls_parameters(smtp).map_err(tls_error)?),
        };
        // `builder_dangerous` only means "no TLS preset": the TLS mode is set here.
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
            .port(smtp.port)
            .tls(tls)
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
            server: format!("{}:{}", smtp.host, smtp.port),
            ca_file: smtp.ca.as_ref().map(|ca| ca.path.clone()),
        })
    }

    pub(crate) async fn deliver(
        &self,
        payload: &Payload,
        ctx: &DeliveryContext<'_>,
    ) -> Result<Delivered, DeliveryError> {
        let subject = crate::transform::render_text(&self.subject, ctx.event, ctx.rule);
        // A line break taken from an event into a header would let the event's
        // sender add headers (Bcc:) to the mail: refused, never folded. Other
        // control characters become spaces.
        if subject.contains(['\r', '\n']) {
            return Err(DeliveryError::Permanent(format!(
                "subject: the text rendered from the event holds a line break (CR or LF), which would inject mail headers: {:?}",
                subject.chars().take(120).collect::<String>()
            )));
        }
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
                if let Some(cert) = certificate_error(&e) {
                    let msg = self.certificate_message(cert);
                    return Err(if out_of_date(cert) {
                        DeliveryError::Retryable(msg)
                    } else {
                        DeliveryError::Permanent(msg)
                    });
                }
                let msg = format!("smtp: {e}");
                if e.is_permanent() {
                    Err(DeliveryError::Permanent(msg))
                } else {
                    Err(DeliveryError::Retryable(msg))
                }
            }
        }
    }

    fn certificate_message(&self, cert: &rustls::Error) -> String {
        use rustls::CertificateError::{BadSignature, UnknownIssuer};
        // Where the trust came from matters only when the issuer is the problem.
        let issuer = matches!(
            cert,
            rustls::Error::InvalidCertificate(UnknownIssuer | BadSignature)
        );
        let hint = match &self.ca_file {
            Some(path) if issuer => format!(" (trusting only the CAs in {})", path.display()),
            None if issuer => " (for a server with a private CA, set smtp.ca_file)".to_owned(),
            _ => String::new(),
        };
        format!(
            "smtp: the TLS certificate of {} was refused: {cert}{hint}",
            self.server
        )
    }
}

/// TLS for `smtp.host`: the platform's roots, or only the `ca_file` certificates.
fn tls_parameters(smtp: &Smtp) -> Result<TlsParameters, lettre::transport::smtp::Error> {
    let mut params = TlsParameters::builder(smtp.host.clone());
    if let Some(ca) = &smtp.ca {
        params = params.certificate_store(CertificateStore::None);
        for cert in &ca.certs {
            params = params.add_root_certificate(Certificate::from_der(cert.to_vec())?);
        }
    }
    params.build_rustls()
}

/// The certificate verification failure behind `e`, if that is why it failed.
fn certificate_error(e: &lettre::transport::smtp::Error) -> Option<&rustls::Error> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        // tokio-rustls reports the handshake failure as an io::Error wrapping
        // rustls's error, and io::Error's `source()` skips the wrapped error.
        let tls = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(tls) = tls {
            return matches!(
                tls,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            )
            .then_some(tls);
        }
        next = err.source();
    }
    None
}

/// A certificate expired or not yet valid: time (a renewal, a clock put right)
/// can fix it.
fn out_of_date(cert: &rustls::Error) -> bool {
    use rustls::CertificateError::{Expired, ExpiredContext, NotValidYet, NotValidYetContext};
    matches!(
        cert,
        rustls::Error::InvalidCertificate(
            Expired | ExpiredContext { .. } | NotValidYet | NotValidYetContext { .. }
        )
    )
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

/// `kind: email`.
pub(crate) fn build(t: &Target, _: &BuildContext<'_>) -> Result<Box<dyn Deliver>, BuildError> {
    let TargetSpec::Email {
        smtp,
        from,
        to,
        subject,
    } = &t.spec
    else {
        return Err(super::wrong_spec(t, "email"));
    };
    Ok(Box::new(EmailTarget::new(
        &t.id, smtp, from, to, subject, t.timeout,
    )?))
}

impl Deliver for EmailTarget {
    fn deliver<'a>(
        &'a self,
        payload: &'a Payload,
        ctx: &'a DeliveryContext<'_>,
    ) -> DeliverFuture<'a> {
        Box::pin(EmailTarget::deliver(self, payload, ctx))
    }
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
            ca: None,
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
