//! `kind: eventbridge`: an AWS EventBridge API destination posting events as
//! EventBridge delivers them without an input transformer: the original envelope
//! (`version`, `id`, `detail-type`, `source`, `account`, `time`, `region`,
//! `resources`, `detail`), one per request, such as the CloudTrail events of the
//! admin's accounts (`AWS API Call via CloudTrail` for `CreateVpc`,
//! `PutBucketEncryption`, `RunInstances`...). The envelope is ingested unchanged:
//! its id is EventBridge's, so a delivery EventBridge retries is stored once. The
//! connection's credential is Basic (the source token as password) or an API key
//! in a header of the admin's choice (`token_header`).

use fleetbus_event::{Defaults, Event};
use serde_json::Value;

use super::SourceError;

/// `kind: eventbridge`.
#[derive(Debug)]
pub struct EventBridge;

impl super::Source for EventBridge {
    fn handle<'a>(
        &'a self,
        state: &'a crate::AppState,
        source: &'a fleetbus_config::Source,
        request: super::Request<'a>,
    ) -> super::HandleFuture<'a> {
        let event = process(request.body, &state.engine.defaults());
        super::ready(source, event.map(|e| vec![e]))
    }
}

/// The envelope in `body`, as it came.
pub fn process(body: &[u8], defaults: &Defaults) -> Result<Event, SourceError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| SourceError::Invalid(format!("body is not valid JSON: {e}")))?;
    let Value::Object(envelope) = &value else {
        return Err(SourceError::Invalid(
            "body must be one EventBridge event (a JSON object); an API destination with an input transformer sends something else".into(),
        ));
    };
    for field in ["id", "source", "detail-type"] {
        if !envelope.contains_key(field) {
            return Err(SourceError::Invalid(format!(
                "{field}: missing (EventBridge always sends it: is an input transformer reshaping the event?)"
            )));
        }
    }
    Ok(Event::from_value(value, defaults)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// A CloudTrail event as EventBridge delivers it (field names are AWS's).
    fn create_vpc() -> Value {
        json!({
            "version": "0",
            "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "detail-type": "AWS API Call via CloudTrail",
            "source": "aws.ec2",
            "account": "111122223333",
            "time": "2026-12-03T10:00:00Z",
            "region": "eu-west-1",
            "resources": [],
            "detail": {
                "eventVersion": "1.08",
                "eventSource": "ec2.amazonaws.com",
                "eventName": "CreateVpc",
                "awsRegion": "eu-west-1",
                "requestParameters": {"cidrBlock": "10.0.0.0/16"},
                "responseElements": {"vpc": {"vpcId": "vpc-0abc"}}
            }
        })
    }

    #[test]
    fn the_envelope_is_taken_unchanged() {
        let e = process(create_vpc().to_string().as_bytes(), &Defaults::default()).unwrap();
        assert_eq!(e.id, "6a7e8feb-b491-4cf7-a9f1-bf3703467718");
        assert_eq!(e.source, "aws.ec2");
        assert_eq!(e.detail_type, "AWS API Call via CloudTrail");
        assert_eq!(e.account, "111122223333");
        assert_eq!(e.region, "eu-west-1");
        assert_eq!(e.detail["eventName"], "CreateVpc");
        let mut reshaped = create_vpc();
        reshaped.as_object_mut().unwrap().remove("id");
        assert_eq!(
            process(reshaped.to_string().as_bytes(), &Defaults::default())
                .unwrap_err()
                .to_string(),
            "id: missing (EventBridge always sends it: is an input transformer reshaping the event?)"
        );
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256), s in ".{0,20}") {
            let _ = process(&bytes, &Defaults::default());
            let _ = process(json!({"id": s, "source": s, "detail-type": s, "detail": s}).to_string().as_bytes(), &Defaults::default());
        }
    }
}
