//! The gelf target: each delivery as one GELF 1.1 message, as Graylog documents
//! the format: `version`, `host`, `short_message` (rendered from the target's
//! template), `full_message` (the target's input: the event, or what its input
//! transformer made), `timestamp` (the event's time, seconds since the epoch),
//! `level`, and additional fields `_event_id`, `_source`, `_detail_type`,
//! `_resources`, `_account`, `_region`, `_rule`, `_target`.
//!
//! Transports: UDP, one datagram per message, chunked (magic `0x1e 0x0f`, an
//! 8-byte message id, sequence number and count) past 8,192 bytes, at most 128
//! chunks; TCP, messages ended by a null byte on one kept connection (opened again
//! when it fails); HTTP, a POST of the JSON. A message UDP cannot carry in 128
//! chunks is a permanent failure naming its size.

use std::sync::atomic::{AtomicU64, Ordering};

use fleetbus_config::{GelfTransport, Target, TargetSpec};
use serde_json::{json, Map, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::{BuildContext, Deliver, DeliverFuture};
use crate::{BuildError, Delivered, DeliveryContext, DeliveryError, Payload};

/// The largest datagram sent: GELF's chunk size for UDP.
pub const MAX_DATAGRAM: usize = 8192;
/// Chunked GELF's header: magic (2), message id (8), sequence number (1), count (1).
const CHUNK_HEADER: usize = 12;
/// GELF allows at most this many chunks per message.
const MAX_CHUNKS: usize = 128;

#[derive(Debug)]
pub struct GelfTarget {
    transport: GelfTransport,
    host: String,
    short_message: String,
    level: u8,
    timeout: std::time::Duration,
    /// The kept TCP connection.
    tcp: Mutex<Option<tokio::net::TcpStream>>,
    http: Option<reqwest::Client>,
    /// Message ids of chunked messages: unique per target and process.
    next_id: AtomicU64,
}

pub(crate) fn build(t: &Target, _: &BuildContext<'_>) -> Result<Box<dyn Deliver>, BuildError> {
    let TargetSpec::Gelf {
        transport,
        host,
        short_message,
        level,
    } = &t.spec
    else {
        return Err(super::wrong_spec(t, "gelf"));
    };
    let http = match transport {
        GelfTransport::Http(_) => Some(super::http::client(&t.id, t.timeout)?),
        _ => None,
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    Ok(Box::new(GelfTarget {
        transport: transport.clone(),
        host: host.clone(),
        short_message: short_message.clone(),
        level: *level,
        timeout: t.timeout,
        tcp: Mutex::new(None),
        http,
        next_id: AtomicU64::new(seed),
    }))
}

/// The GELF message for one delivery.
pub fn message(
    host: &str,
    short: &str,
    level: u8,
    payload: &Payload,
    ctx: &DeliveryContext<'_>,
) -> Value {
    let e = &ctx.event.event;
    let mut m = Map::new();
    m.insert("version".into(), json!("1.1"));
    m.insert("host".into(), json!(host));
    let short = crate::transform::render_text(short, ctx.event, ctx.rule);
    // GELF wants a non-empty short message.
    let short = if short.trim().is_empty() {
        e.detail_type.clone()
    } else {
        short
    };
    m.insert("short_message".into(), json!(short));
    m.insert("full_message".into(), json!(payload.to_text()));
    let ts = e.time.unix_timestamp_nanos() as f64 / 1e9;
    m.insert("timestamp".into(), json!((ts * 1000.0).round() / 1000.0));
    m.insert("level".into(), json!(level));
    m.insert("_event_id".into(), json!(e.id));
    m.insert("_source".into(), json!(e.source));
    m.insert("_detail_type".into(), json!(e.detail_type));
    m.insert("_resources".into(), json!(e.resources.join(" ")));
    m.insert("_account".into(), json!(e.account));
    m.insert("_region".into(), json!(e.region));
    m.insert("_rule".into(), json!(ctx.rule));
    m.insert("_target".into(), json!(ctx.target));
    Value::Object(m)
}

/// A message's UDP datagrams: itself when it fits, chunks otherwise; `None` when
/// it needs more than GELF's 128 chunks.
pub fn datagrams(bytes: &[u8], id: u64) -> Option<Vec<Vec<u8>>> {
    if bytes.len() <= MAX_DATAGRAM {
        return Some(vec![bytes.to_vec()]);
    }
    let room = MAX_DATAGRAM - CHUNK_HEADER;
    let count = bytes.len().div_ceil(room);
    if count > MAX_CHUNKS {
        return None;
    }
    Some(
        bytes
            .chunks(room)
            .enumerate()
            .map(|(i, part)| {
                let mut d = Vec::with_capacity(CHUNK_HEADER + part.len());
                d.extend_from_slice(&[0x1e, 0x0f]);
                d.extend_from_slice(&id.to_be_bytes());
                d.push(i as u8);
                d.push(count as u8);
                d.extend_from_slice(part);
                d
            })
            .collect(),
    )
}

impl GelfTarget {
    async fn send(&self, bytes: Vec<u8>) -> Result<String, DeliveryError> {
        let retry = |what: &str, e: &dyn std::fmt::Display| {
            DeliveryError::Retryable(format!("gelf {what}: {e}"))
        };
        match &self.transport {
            GelfTransport::Udp(addr) => {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let grams = datagrams(&bytes, id).ok_or_else(|| {
                    DeliveryError::Permanent(format!(
                        "gelf message of {} bytes needs more than {MAX_CHUNKS} UDP chunks: use tcp:// or http://",
                        bytes.len()
                    ))
                })?;
                let socket = tokio::net::UdpSocket::bind(if addr.starts_with('[') {
                    "[::]:0"
                } else {
                    "0.0.0.0:0"
                })
                .await
                .map_err(|e| retry("udp socket", &e))?;
                socket
                    .connect(addr)
                    .await
                    .map_err(|e| retry(&format!("udp {addr}"), &e))?;
                for g in &grams {
                    socket
                        .send(g)
                        .await
                        .map_err(|e| retry(&format!("udp {addr}"), &e))?;
                }
                Ok(format!("udp {} datagram(s)", grams.len()))
            }
            GelfTransport::Tcp(addr) => {
                let mut framed = bytes;
                framed.push(0);
                // The lock is a tokio mutex: the one connection is written by one
                // delivery at a time, across the write's awaits.
                let mut conn = self.tcp.lock().await;
                for attempt in 0..2 {
                    if conn.is_none() {
                        let stream = tokio::time::timeout(
                            self.timeout,
                            tokio::net::TcpStream::connect(addr.as_str()),
                        )
                        .await
                        .map_err(|_| retry(&format!("tcp {addr}"), &"connect timed out"))?
                        .map_err(|e| retry(&format!("tcp {addr}"), &e))?;
                        *conn = Some(stream);
                    }
                    let Some(stream) = conn.as_mut() else {
                        continue;
                    };
                    match stream.write_all(&framed).await {
                        Ok(()) => return Ok("tcp".into()),
                        // The kept connection was closed by the other side: once more
                        // on a new one.
                        Err(e) if attempt == 0 => {
                            tracing::debug!(error = %e, "gelf tcp connection lost; reconnecting");
                            *conn = None;
                        }
                        Err(e) => {
                            *conn = None;
                            return Err(retry(&format!("tcp {addr}"), &e));
                        }
                    }
                }
                Err(retry(&format!("tcp {addr}"), &"no connection"))
            }
            GelfTransport::Http(url) => {
                let client = self.http.as_ref().ok_or_else(|| {
                    DeliveryError::Permanent("gelf http: no client was built".into())
                })?;
                let resp = client
                    .post(url)
                    .header("Content-Type", "application/json")
                    .body(bytes)
                    .send()
                    .await
                    .map_err(|e| retry(&format!("http {url}"), &e))?;
                let status = resp.status();
                if status.is_success() {
                    Ok(format!("http {}", status.as_u16()))
                } else if status.is_server_error() || status.as_u16() == 429 {
                    Err(DeliveryError::Retryable(format!(
                        "gelf http {url}: {status}"
                    )))
                } else {
                    Err(DeliveryError::Permanent(format!(
                        "gelf http {url}: {status}"
                    )))
                }
            }
        }
    }
}

impl Deliver for GelfTarget {
    fn deliver<'a>(
        &'a self,
        payload: &'a Payload,
        ctx: &'a DeliveryContext<'_>,
    ) -> DeliverFuture<'a> {
        Box::pin(async move {
            let m = message(&self.host, &self.short_message, self.level, payload, ctx);
            let bytes = serde_json::to_vec(&m)
                .map_err(|e| DeliveryError::Permanent(format!("gelf message: {e}")))?;
            let status = self.send(bytes).await?;
            Ok(Delivered {
                status,
                emitted: Vec::new(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_small_message_is_one_datagram_a_large_one_is_chunked() {
        let small = vec![b'a'; MAX_DATAGRAM];
        assert_eq!(datagrams(&small, 7).unwrap(), vec![small.clone()]);
        let large = vec![b'b'; MAX_DATAGRAM * 3];
        let grams = datagrams(&large, 0x0102030405060708).unwrap();
        assert_eq!(grams.len(), 4);
        for (i, g) in grams.iter().enumerate() {
            assert!(g.len() <= MAX_DATAGRAM);
            assert_eq!(&g[..2], &[0x1e, 0x0f]);
            assert_eq!(&g[2..10], &[1, 2, 3, 4, 5, 6, 7, 8]);
            assert_eq!((g[10], g[11]), (i as u8, 4));
        }
        let joined: Vec<u8> = grams.iter().flat_map(|g| g[12..].to_vec()).collect();
        assert_eq!(joined, large);
        assert!(datagrams(&vec![0; (MAX_DATAGRAM - 12) * 128 + 1], 1).is_none());
    }

    proptest! {
        #[test]
        fn chunks_always_reassemble(len in 0usize..40_000, id in any::<u64>()) {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let grams = datagrams(&bytes, id).unwrap();
            let joined: Vec<u8> = if grams.len() == 1 && bytes.len() <= MAX_DATAGRAM {
                grams[0].clone()
            } else {
                grams.iter().flat_map(|g| g[12..].to_vec()).collect()
            };
            prop_assert_eq!(joined, bytes);
        }
    }
}
