//! The slack target: posts to an incoming-webhook URL.
//!
//! What is posted: a text payload (or a JSON string) becomes `{"text": ...}`; a
//! JSON object is sent as is, so a template can build Block Kit `blocks`; other
//! JSON becomes its text. With the default input (the whole event) the message
//! is a one-line summary: detail-type, source and resources.
//!
//! The webhook URL is a secret: it appears in no log line and no error message.
//! Outcomes are classified as for the http target.

use super::{BuildContext, Deliver, DeliverFuture};
use fleetbus_config::{Target, TargetSpec};

use std::time::Duration;

use fleetbus_config::Secret;
use reqwest::header::CONTENT_TYPE;
use reqwest::Client;
use serde_json::{json, Value};

use super::http::{classify, client, request_error};
use crate::{BuildError, Delivered, DeliveryContext, DeliveryError, Payload};

#[derive(Debug)]
pub struct SlackTarget {
    client: Client,
    clock: super::Clock,
    url: Secret,
    summarize: bool,
}

impl SlackTarget {
    pub(crate) fn new(
        id: &str,
        url: &Secret,
        summarize: bool,
        timeout: Duration,
        clock: super::Clock,
    ) -> Result<SlackTarget, BuildError> {
        if reqwest::Url::parse(url.expose()).is_err() {
            // The value is a secret: say so without quoting it.
            return Err(BuildError::Other {
                target: id.to_owned(),
                reason: "the webhook URL is not a valid URL".into(),
            });
        }
        Ok(SlackTarget {
            client: client(id, timeout)?,
            url: url.clone(),
            summarize,
            clock,
        })
    }

    pub(crate) async fn deliver(
        &self,
        payload: &Payload,
        ctx: &DeliveryContext<'_>,
    ) -> Result<Delivered, DeliveryError> {
        let message = if self.summarize {
            json!({ "text": summary(ctx) })
        } else {
            message(payload)
        };
        let response = self
            .client
            .post(self.url.expose())
            .header(CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", ctx.idempotency_key)
            .body(serde_json::to_vec(&message).unwrap_or_default())
            .send()
            .await
            .map_err(|e| request_error(&e, true))?;
        classify(response, (self.clock)()).await
    }
}

/// The Slack message for a payload.
fn message(payload: &Payload) -> Value {
    match payload {
        Payload::Text(t) => json!({ "text": t }),
        Payload::Json(Value::String(s)) => json!({ "text": s }),
        Payload::Json(v @ Value::Object(_)) => v.clone(),
        Payload::Json(other) => json!({ "text": other.to_string() }),
    }
}

/// `Device Enrolled from mdm.nanomdm (device/C02XK1JDJG5J)`, every value from
/// the event escaped.
fn summary(ctx: &DeliveryContext<'_>) -> String {
    let e = &ctx.event.event;
    let mut s = format!(
        "{} from {}",
        slack_escape(&e.detail_type),
        slack_escape(&e.source)
    );
    if !e.resources.is_empty() {
        let resources: Vec<String> = e.resources.iter().map(|r| slack_escape(r)).collect();
        s.push_str(&format!(" ({})", resources.join(", ")));
    }
    s
}

/// Slack's escaping of text that must not be read as markup: `&`, `<` and `>`
/// (so a Mac named `<!channel>` pings nobody).
pub(crate) fn slack_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// `kind: slack`.
pub(crate) fn build(t: &Target, cx: &BuildContext<'_>) -> Result<Box<dyn Deliver>, BuildError> {
    let TargetSpec::Slack { url } = &t.spec else {
        return Err(super::wrong_spec(t, "slack"));
    };
    Ok(Box::new(SlackTarget::new(
        &t.id,
        url,
        t.input == fleetbus_config::Input::Event,
        t.timeout,
        cx.clock,
    )?))
}

impl Deliver for SlackTarget {
    fn deliver<'a>(
        &'a self,
        payload: &'a Payload,
        ctx: &'a DeliveryContext<'_>,
    ) -> DeliverFuture<'a> {
        Box::pin(SlackTarget::deliver(self, payload, ctx))
    }

    fn text_escape(&self) -> Option<crate::transform::Escape> {
        Some(slack_escape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetbus_event::{Event, Meta, StoredEvent};

    #[test]
    fn event_text_is_escaped_as_slack_documents() {
        assert_eq!(
            slack_escape("<!channel> & <@U123>"),
            "&lt;!channel&gt; &amp; &lt;@U123&gt;"
        );
        let mut event = Event::new("mdm", "Device <!here> Named", Default::default());
        event.resources = vec!["device/<!channel>".into()];
        let stored = StoredEvent {
            event,
            meta: fleetbus_event::Meta::ingested("default", "api"),
        };
        let ctx = DeliveryContext {
            event: &stored,
            rule: "r",
            target: "t",
            attempt: 1,
            idempotency_key: "k",
        };
        assert_eq!(
            summary(&ctx),
            "Device &lt;!here&gt; Named from mdm (device/&lt;!channel&gt;)"
        );
    }

    #[test]
    fn messages() {
        assert_eq!(message(&Payload::Text("hi".into())), json!({"text": "hi"}));
        assert_eq!(message(&Payload::Json(json!("hi"))), json!({"text": "hi"}));
        let blocks = json!({"blocks": [{"type": "section"}]});
        assert_eq!(message(&Payload::Json(blocks.clone())), blocks);
        assert_eq!(message(&Payload::Json(json!([1]))), json!({"text": "[1]"}));
    }

    #[test]
    fn whole_event_summary() {
        let mut event = Event::new("mdm.nanomdm", "Device Enrolled", Default::default());
        event.resources = vec!["device/C02".into(), "user/jdoe".into()];
        let stored = StoredEvent {
            event,
            meta: Meta::ingested("default", "api"),
        };
        let ctx = DeliveryContext {
            event: &stored,
            rule: "r",
            target: "t",
            attempt: 1,
            idempotency_key: "k",
        };
        assert_eq!(
            summary(&ctx),
            "Device Enrolled from mdm.nanomdm (device/C02, user/jdoe)"
        );
    }

    #[test]
    fn invalid_url_error_does_not_quote_it() {
        let err = SlackTarget::new(
            "s",
            &Secret::from_value("hooks secret-token"),
            false,
            Duration::from_secs(1),
            std::time::SystemTime::now,
        )
        .unwrap_err();
        assert!(!err.to_string().contains("secret-token"), "{err}");
    }
}
