//! The management API in process: events, timelines, the dead-letter queue, reload.

use serde_json::json;

use crate::support::Api;

#[test]
fn an_unknown_event_id_is_404_naming_it() {
    let api = Api::start();
    let (status, body) = api.get("/v1/events/no-such-id");
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["message"], "no event \"no-such-id\"");
}

#[test]
fn a_timeline_lists_a_nodes_events_newest_first_and_honours_the_limit() {
    let api = Api::start();
    for n in 1..=3 {
        let entry = json!({
            "Source": "com.example",
            "DetailType": format!("Step {n}"),
            "Detail": "{}",
            "Resources": ["device/C02T"],
        });
        let (status, answer) = api.post_json("/v1/events", &json!({"Entries": [entry]}));
        assert_eq!(status, 200, "{answer}");
    }
    let (status, body) = api.get("/v1/timeline?resource=device/C02T");
    assert_eq!(status, 200, "{body}");
    let types: Vec<_> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["detail-type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types, ["Step 3", "Step 2", "Step 1"]);
    let (_, body) = api.get("/v1/timeline?resource=device/C02T&limit=1");
    assert_eq!(body["events"].as_array().unwrap().len(), 1, "{body}");
    let (status, _) = api.get("/v1/timeline");
    assert_eq!(status, 400, "a timeline needs a resource");
}

#[test]
fn the_dead_letter_queue_starts_empty_and_a_redrive_moves_nothing() {
    let api = Api::start();
    let (status, body) = api.get("/v1/dlq");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["entries"], json!([]));
    let (status, body) = api.post_json("/v1/dlq/redrive", &json!({"ids": [42]}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["redriven"], json!([]));
}

#[test]
fn a_redrive_body_of_the_wrong_shape_is_400_saying_the_expected_shape() {
    let api = Api::start();
    let (status, body) = api.post_json("/v1/dlq/redrive", &json!({"id": 1}));
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("expected {\"ids\": [1, 2]}"), "{message}");
}

#[test]
fn reload_without_a_config_file_is_refused_with_the_reason() {
    let api = Api::start();
    let (status, body) = api.post_json("/v1/admin/reload", &json!({}));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "InvalidConfiguration");
    assert_eq!(body["error"]["message"], "no configuration file to reload");
}
