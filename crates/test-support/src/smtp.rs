//! A small SMTP sink for tests: enough of RFC 5321 for one client at a time, plain,
//! over implicit TLS, or upgraded with STARTTLS (RFC 3207), with AUTH PLAIN or
//! LOGIN (RFC 4954) once encrypted. TLS is tokio-rustls with a CA and a server
//! certificate generated per test ([`test_pki`]).
//!
//! Shared by the targets crate's tests (the email target called directly) and the
//! `fleetbus serve` end-to-end tests (the real binary), through this crate's
//! `smtp` feature. [`start`] spawns onto the current tokio runtime.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_rustls::TlsAcceptor;

/// One message the sink accepted, with how its session went.
#[derive(Debug, Clone, Default)]
pub struct Mail {
    pub from: String,
    pub rcpt: Vec<String>,
    pub data: String,
    /// Whether the session was encrypted when the message came.
    pub tls: bool,
    /// `user:password` from AUTH, if the client authenticated.
    pub auth: Option<String>,
    /// EHLO commands in the session up to the message.
    pub ehlo: u32,
}

/// The messages a sink accepted, in order.
pub type Mails = Arc<Mutex<Vec<Mail>>>;

#[derive(Clone)]
pub enum Mode {
    Plain,
    /// TLS from the first byte.
    Implicit(TlsAcceptor),
    /// Plain greeting, STARTTLS offered, then TLS.
    StartTls(TlsAcceptor),
}

#[derive(Clone)]
struct Sink {
    rcpt_reply: &'static str,
    /// The one AUTH mechanism advertised once encrypted (or in plain mode).
    auth: Option<&'static str>,
    mails: Mails,
}

#[derive(Default)]
struct Session {
    ehlo: u32,
    auth: Option<String>,
}

/// A sink on a free loopback port answering every RCPT with `rcpt_reply` (a full
/// reply line, e.g. `"250 ok\r\n"`) and advertising the AUTH mechanism `auth`
/// (`"PLAIN"` or `"LOGIN"`), if any. Returns the port and the accepted messages.
pub async fn start(
    mode: Mode,
    rcpt_reply: &'static str,
    auth: Option<&'static str>,
) -> (u16, Mails) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sink = Sink {
        rcpt_reply,
        auth,
        mails: Arc::new(Mutex::new(Vec::new())),
    };
    let mails = sink.mails.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (sink, mode) = (sink.clone(), mode.clone());
            tokio::spawn(async move {
                let mut session = Session::default();
                match mode {
                    Mode::Plain => {
                        converse(tcp, &sink, &mut session, false, true, false).await;
                    }
                    // A failed handshake (the client refused our certificate)
                    // just ends the session.
                    Mode::Implicit(acceptor) => {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            converse(tls, &sink, &mut session, true, true, false).await;
                        }
                    }
                    Mode::StartTls(acceptor) => {
                        let plain = converse(tcp, &sink, &mut session, false, true, true).await;
                        if let Some(tcp) = plain {
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                converse(tls, &sink, &mut session, true, false, false).await;
                            }
                        }
                    }
                }
            });
        }
    });
    (port, mails)
}

fn decode(b64: &str) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// One SMTP conversation until QUIT or EOF; with `offer_starttls`, returns the
/// stream when the client asks for the upgrade (after the 220, nothing is
/// buffered: the client waits for it before its TLS hello).
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    sink: &Sink,
    session: &mut Session,
    tls: bool,
    greet: bool,
    offer_starttls: bool,
) -> Option<S> {
    let mut s = BufReader::new(stream);
    let mut mail = Mail::default();
    let mut line = String::new();
    if greet {
        s.write_all(b"220 sink ESMTP\r\n").await.ok()?;
        s.flush().await.ok()?;
    }
    loop {
        line.clear();
        if s.read_line(&mut line).await.unwrap_or(0) == 0 {
            return None;
        }
        let cmd = line.trim_end().to_ascii_uppercase();
        let reply: String = if cmd.starts_with("EHLO") {
            session.ehlo += 1;
            let mut caps = vec!["sink".to_owned(), "8BITMIME".to_owned()];
            if offer_starttls {
                caps.push("STARTTLS".into());
            } else if let Some(mechanism) = sink.auth {
                caps.push(format!("AUTH {mechanism}"));
            }
            let last = caps.len() - 1;
            caps.iter()
                .enumerate()
                .map(|(i, c)| format!("250{}{c}\r\n", if i == last { ' ' } else { '-' }))
                .collect()
        } else if cmd == "STARTTLS" && offer_starttls {
            s.write_all(b"220 go ahead\r\n").await.ok()?;
            s.flush().await.ok()?;
            return Some(s.into_inner());
        } else if cmd.starts_with("AUTH PLAIN ") {
            // authzid NUL user NUL password
            let decoded = decode(&line.trim_end()[11..]);
            let parts: Vec<&str> = decoded.split('\0').collect();
            session.auth = Some(parts[1..].join(":"));
            "235 ok\r\n".into()
        } else if cmd == "AUTH LOGIN" {
            let mut answers = Vec::new();
            for prompt in ["Username:", "Password:"] {
                let challenge = base64::engine::general_purpose::STANDARD.encode(prompt);
                s.write_all(format!("334 {challenge}\r\n").as_bytes())
                    .await
                    .ok()?;
                s.flush().await.ok()?;
                line.clear();
                if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return None;
                }
                answers.push(decode(&line));
            }
            session.auth = Some(answers.join(":"));
            "235 ok\r\n".into()
        } else if cmd.starts_with("HELO") || cmd.starts_with("RSET") || cmd.starts_with("NOOP") {
            "250 ok\r\n".into()
        } else if cmd.starts_with("MAIL FROM:") {
            mail.from = line.trim_end()[10..].to_owned();
            "250 ok\r\n".into()
        } else if cmd.starts_with("RCPT TO:") {
            mail.rcpt.push(line.trim_end()[8..].to_owned());
            sink.rcpt_reply.into()
        } else if cmd == "DATA" {
            s.write_all(b"354 go ahead\r\n").await.ok()?;
            s.flush().await.ok()?;
            loop {
                line.clear();
                if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return None;
                }
                if line == ".\r\n" {
                    break;
                }
                mail.data.push_str(&line);
            }
            mail.tls = tls;
            mail.auth = session.auth.clone();
            mail.ehlo = session.ehlo;
            sink.mails.lock().unwrap().push(std::mem::take(&mut mail));
            "250 queued\r\n".into()
        } else if cmd == "QUIT" {
            let _ = s.write_all(b"221 bye\r\n").await;
            let _ = s.shutdown().await;
            return None;
        } else {
            "502 not implemented\r\n".into()
        };
        s.write_all(reply.as_bytes()).await.ok()?;
        s.flush().await.ok()?;
    }
}

/// A test CA, and a server certificate it issued for `names`, served by
/// `acceptor`. The CA's name differs with `names`, so another call's CA is a
/// stranger (an unknown issuer), not a namesake with the wrong key.
pub struct Pki {
    pub ca_pem: String,
    pub acceptor: TlsAcceptor,
}

/// A [`Pki`] whose server certificate is valid for `names` (host names, or IP
/// addresses such as `127.0.0.1`).
pub fn test_pki(names: &[&str]) -> Pki {
    pki(names, false)
}

/// A [`Pki`] whose server certificate expired in 2001.
pub fn expired_pki(names: &[&str]) -> Pki {
    pki(names, true)
}

fn pki(names: &[&str], expired: bool) -> Pki {
    let mut ca = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, format!("test CA for {names:?}"));
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);

    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut leaf = rcgen::CertificateParams::new(names).unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "sink");
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    if expired {
        leaf.not_before = rcgen::date_time_ymd(2000, 1, 1);
        leaf.not_after = rcgen::date_time_ymd(2001, 1, 1);
    }
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();

    Pki {
        ca_pem: ca_cert.pem(),
        acceptor: acceptor(leaf_cert.der().clone(), &leaf_key),
    }
}

/// A TLS server presenting `cert` alone (no intermediates).
pub fn acceptor(cert: CertificateDer<'static>, key: &rcgen::KeyPair) -> TlsAcceptor {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    TlsAcceptor::from(Arc::new(config))
}
