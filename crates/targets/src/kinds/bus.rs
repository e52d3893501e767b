//! The bus target: puts a derived event on another bus.
//!
//! Which event: when the payload is a JSON object that validates as an
//! EventBridge envelope (it has at least `source` and `detail-type`), that
//! event; otherwise the matched event, whose `detail` is replaced by the payload
//! when the payload is a JSON object (a text or non-object payload leaves the
//! event as it was). Absent `account`/`region` come from the matched event.
//!
//! The emitted event always gets a new id, derived from the delivery's
//! idempotency key (UUID v5): every retry of one delivery yields the same id, so
//! the engine's de-duplication can drop the repeats, and the copy never collides
//! with the original's id.

use super::{BuildContext, Deliver, DeliverFuture};
use crate::BuildError;
use fleetbus_config::{Target, TargetSpec};

use fleetbus_event::{Defaults, Event};
use serde_json::Value;

use crate::{Delivered, DeliveryContext, DeliveryError, Payload};

#[derive(Debug)]
pub struct BusTarget {
    bus: String,
}

impl BusTarget {
    pub(crate) fn new(bus: &str) -> BusTarget {
        BusTarget {
            bus: bus.to_owned(),
        }
    }

    pub(crate) fn deliver(
        &self,
        payload: &Payload,
        ctx: &DeliveryContext<'_>,
    ) -> Result<Delivered, DeliveryError> {
        let original = &ctx.event.event;
        let defaults = Defaults {
            account: original.account.clone(),
            region: original.region.clone(),
            now: time::OffsetDateTime::now_utc(),
        };
        let mut event = match payload {
            Payload::Json(v @ Value::Object(map)) => {
                match Event::from_value(v.clone(), &defaults) {
                    Ok(e) => e,
                    Err(_) => {
                        let mut e = original.clone();
                        e.detail = map.clone();
                        e
                    }
                }
            }
            _ => original.clone(),
        };
        event.id = derived_id(ctx.idempotency_key, 0);
        event
            .check_size()
            .map_err(|e| DeliveryError::Permanent(format!("derived event refused: {e}")))?;
        Ok(Delivered {
            status: format!("put on bus {}", self.bus),
            emitted: vec![(self.bus.clone(), event)],
        })
    }
}

/// A stable event id for the `n`th event a delivery emits.
pub(crate) fn derived_id(idempotency_key: &str, n: usize) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("fleetbus:{idempotency_key}:{n}").as_bytes(),
    )
    .to_string()
}

/// `kind: bus`.
pub(crate) fn build(t: &Target, _: &BuildContext<'_>) -> Result<Box<dyn Deliver>, BuildError> {
    let TargetSpec::Bus { bus } = &t.spec else {
        return Err(super::wrong_spec(t, "bus"));
    };
    Ok(Box::new(BusTarget::new(bus)))
}

impl Deliver for BusTarget {
    fn deliver<'a>(
        &'a self,
        payload: &'a Payload,
        ctx: &'a DeliveryContext<'_>,
    ) -> DeliverFuture<'a> {
        // Nothing to wait for: the engine puts the event on the bus.
        let result = BusTarget::deliver(self, payload, ctx);
        Box::pin(std::future::ready(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetbus_event::{Meta, StoredEvent};
    use serde_json::json;

    fn stored() -> StoredEvent {
        let mut event = Event::new(
            "mdm",
            "Device Enrolled",
            json!({"serial": "C02"}).as_object().cloned().unwrap(),
        );
        event.account = "acct".into();
        event.region = "eu".into();
        StoredEvent {
            event,
            meta: Meta::ingested("default", "api"),
        }
    }

    fn ctx(e: &StoredEvent) -> DeliveryContext<'_> {
        DeliveryContext {
            event: e,
            rule: "r",
            target: "t",
            attempt: 1,
            idempotency_key: "id:r:t",
        }
    }

    #[test]
    fn envelope_payload_is_the_new_event() {
        let e = stored();
        let t = BusTarget::new("audit");
        let out = t
            .deliver(
                &Payload::Json(json!({"source": "x", "detail-type": "Y", "detail": {"a": 1}})),
                &ctx(&e),
            )
            .unwrap();
        let (bus, ev) = &out.emitted[0];
        assert_eq!(bus, "audit");
        assert_eq!(ev.source, "x");
        assert_eq!(ev.detail_type, "Y");
        assert_eq!(ev.account, "acct");
        assert_eq!(ev.region, "eu");
        assert_ne!(ev.id, e.event.id);
    }

    #[test]
    fn object_payload_replaces_detail_and_ids_are_stable() {
        let e = stored();
        let t = BusTarget::new("audit");
        let a = t
            .deliver(&Payload::Json(json!({"summary": "ok"})), &ctx(&e))
            .unwrap();
        let b = t
            .deliver(&Payload::Json(json!({"summary": "ok"})), &ctx(&e))
            .unwrap();
        let ev = &a.emitted[0].1;
        assert_eq!(ev.source, "mdm");
        assert_eq!(ev.detail, *json!({"summary": "ok"}).as_object().unwrap());
        assert_eq!(ev.id, b.emitted[0].1.id);
        assert_ne!(ev.id, e.event.id);
    }

    #[test]
    fn text_payload_forwards_the_event() {
        let e = stored();
        let out = BusTarget::new("b")
            .deliver(&Payload::Text("hello".into()), &ctx(&e))
            .unwrap();
        let ev = &out.emitted[0].1;
        assert_eq!(ev.detail, e.event.detail);
        assert_eq!(ev.detail_type, "Device Enrolled");
    }
}
