//! `kind: assets`: update a device and/or a user record in the asset store from the
//! event, by field mappings (constants or JSONPaths). A path that matches nothing
//! leaves that field as it is, so one rule can feed partial facts from many sources.

use super::{BuildContext, Deliver, DeliverFuture};
use crate::{BuildError, Payload};
use fleetbus_config::{Target, TargetSpec};

use std::collections::BTreeMap;

use fleetbus_assets::{DeviceUpdate, UserUpdate};
use fleetbus_config::Field;
use serde_json::Value;
use time::OffsetDateTime;

use crate::{Delivered, DeliveryContext, DeliveryError};

#[derive(Debug)]
pub struct AssetsTarget {
    device: BTreeMap<String, Field>,
    user: BTreeMap<String, Field>,
    assets: Option<fleetbus_assets::AsyncAssetStore>,
}

impl AssetsTarget {
    pub(crate) fn new(
        device: &BTreeMap<String, Field>,
        user: &BTreeMap<String, Field>,
        assets: Option<&fleetbus_assets::AsyncAssetStore>,
    ) -> Self {
        AssetsTarget {
            assets: assets.cloned(),
            device: device.clone(),
            user: user.clone(),
        }
    }

    pub(crate) async fn deliver(
        &self,
        ctx: &DeliveryContext<'_>,
    ) -> Result<Delivered, DeliveryError> {
        let assets = self.assets.as_ref().ok_or_else(|| {
            DeliveryError::Permanent("assets target: no asset store is configured".into())
        })?;
        let doc = ctx.event.event.to_value();
        let user: Option<UserUpdate> = if self.user.is_empty() {
            None
        } else {
            let update: UserUpdate = record(&self.user, &doc, "user")?;
            if update.id.is_empty() {
                return Err(DeliveryError::Permanent(
                    "user.id matched nothing in the event".into(),
                ));
            }
            Some(update)
        };
        let device: Option<DeviceUpdate> = if self.device.is_empty() {
            None
        } else {
            let update: DeviceUpdate = record(&self.device, &doc, "device")?;
            if update.serial.is_empty() {
                return Err(DeliveryError::Permanent(
                    "device.serial matched nothing in the event".into(),
                ));
            }
            Some(update)
        };
        let done = assets
            .run("assets target", move |a| -> Result<_, DeliveryError> {
                let now = OffsetDateTime::now_utc();
                let mut done = Vec::new();
                if let Some(u) = user {
                    a.upsert_user(&u, now)?;
                    done.push(format!("user {}", u.id));
                }
                if let Some(d) = device {
                    a.upsert_device(&d, now)?;
                    done.push(format!("device {}", d.serial));
                }
                Ok(done)
            })
            .await?;
        Ok(Delivered {
            status: format!("updated {}", done.join(", ")),
            emitted: Vec::new(),
        })
    }
}

/// The update record a section's mappings give: constants as strings, paths as the
/// JSON they select (scalars other than strings become text, since every record field
/// is text; a path that selects nothing leaves its field out).
fn record<T: serde::de::DeserializeOwned>(
    fields: &BTreeMap<String, Field>,
    doc: &Value,
    section: &str,
) -> Result<T, DeliveryError> {
    let mut object = serde_json::Map::new();
    for (name, field) in fields {
        let value = match field {
            Field::Const(c) => Value::String(c.clone()),
            Field::Path(p) => match p.select(doc) {
                None | Some(Value::Null) => continue,
                Some(Value::Number(n)) => Value::String(n.to_string()),
                Some(Value::Bool(b)) => Value::String(b.to_string()),
                Some(v) => v,
            },
            Field::Template(t) => match t.render(doc) {
                Ok(Some(text)) => Value::String(text),
                Ok(None) => continue,
                Err(e) => return Err(DeliveryError::Permanent(format!("{section}.{name}: {e}"))),
            },
        };
        // Tags may come as one string; the record keeps a list.
        let value = match (name.as_str(), value) {
            ("tags" | "add_tags", Value::String(s)) => Value::Array(vec![Value::String(s)]),
            (_, v) => v,
        };
        object.insert(name.clone(), value);
    }
    serde_json::from_value(Value::Object(object))
        .map_err(|e| DeliveryError::Permanent(format!("{section} fields: {e}")))
}

/// `kind: assets`.
pub(crate) fn build(t: &Target, cx: &BuildContext<'_>) -> Result<Box<dyn Deliver>, BuildError> {
    let TargetSpec::Assets { device, user } = &t.spec else {
        return Err(super::wrong_spec(t, "assets"));
    };
    Ok(Box::new(AssetsTarget::new(device, user, cx.assets)))
}

impl Deliver for AssetsTarget {
    fn deliver<'a>(&'a self, _: &'a Payload, ctx: &'a DeliveryContext<'_>) -> DeliverFuture<'a> {
        // It reads the event itself: its "input" is the field mapping.
        Box::pin(AssetsTarget::deliver(self, ctx))
    }
}
