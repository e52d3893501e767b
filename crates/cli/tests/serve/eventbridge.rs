//! `kind: eventbridge` through the real binary: an API destination posting a
//! CloudTrail event as EventBridge delivers it (field names are AWS's), with the
//! connection's API key, taken unchanged and once.

use serde_json::json;

use super::support::*;

#[test]
fn an_api_destination_event_is_taken_unchanged_and_once() {
    let (_dir, _rx, server) = start();
    let event = json!({
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.s3",
        "account": "111122223333",
        "time": "2026-12-03T10:00:00Z",
        "region": "eu-west-1",
        "resources": ["arn:aws:s3:::audit-logs"],
        "detail": {"eventSource": "s3.amazonaws.com", "eventName": "CreateBucket",
                   "requestParameters": {"bucketName": "audit-logs"}}
    });
    let post = |key: &str| {
        server.post(
            "/v1/sources/aws",
            None,
            "application/json",
            event.to_string().as_bytes(),
            &[("X-Api-Key", key)],
        )
    };
    let (status, answer) = post(SOURCE_TOKEN);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["Entries"][0]["EventId"], event["id"]);
    let (status, again) = post(SOURCE_TOKEN);
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        again["Entries"][0]["Duplicate"], true,
        "EventBridge retried: stored once"
    );
    assert_eq!(post("wrong").0, 401);
    let (status, stored) = server.get("/v1/events/6a7e8feb-b491-4cf7-a9f1-bf3703467718");
    assert_eq!(status, 200, "{stored}");
    let stored = &stored["event"];
    for field in [
        "source",
        "detail-type",
        "account",
        "region",
        "time",
        "resources",
        "detail",
    ] {
        assert_eq!(stored[field], event[field], "{field} changed");
    }
    server.stop();
}
