//! The asset API in process, on the async asset-store facade.

use serde_json::json;

use crate::support::{Api, Options, TOKEN};

fn put(api: &Api, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    api.call(
        "PUT",
        path,
        Some(TOKEN),
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
}

fn import(api: &Api, csv: &str) -> (u16, serde_json::Value) {
    api.call(
        "POST",
        "/v1/assets/import",
        Some(TOKEN),
        &[("content-type", "text/csv")],
        csv.as_bytes(),
    )
}

#[test]
fn a_server_without_an_asset_store_answers_404_saying_so() {
    let api = Api::with(Options {
        assets: false,
        ..Options::default()
    });
    let (status, body) = api.get("/v1/assets/devices");
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["message"], "this server has no asset store");
}

#[test]
fn a_device_put_is_read_back_with_its_pins_and_commands() {
    let api = Api::start();
    let (status, body) = put(
        &api,
        "/v1/assets/devices/C02XK1JQJG5H",
        &json!({"name": "Grace's MacBook", "os_version": "14.5"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["serial"], "C02XK1JQJG5H");
    let (status, body) = api.get("/v1/assets/devices/C02XK1JQJG5H");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "Grace's MacBook");
    assert_eq!(body["escrowed_pins"], json!([]));
    assert_eq!(body["commands"], json!([]));
    let (_, list) = api.get("/v1/assets/devices");
    assert_eq!(list["devices"].as_array().unwrap().len(), 1, "{list}");
}

#[test]
fn a_put_naming_another_key_in_its_body_is_refused_and_writes_nothing() {
    let api = Api::start();
    let (status, body) = put(
        &api,
        "/v1/assets/devices/C02A",
        &json!({"serial": "C02B", "name": "x"}),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["message"],
        "serial \"C02B\" in the body differs from \"C02A\" in the path"
    );
    let (status, _) = api.get("/v1/assets/devices/C02A");
    assert_eq!(status, 404);
    let (status, _) = api.get("/v1/assets/devices/C02B");
    assert_eq!(status, 404);
}

#[test]
fn a_user_put_is_read_back_and_listed() {
    let api = Api::start();
    let (status, body) = put(
        &api,
        "/v1/assets/users/u-1",
        &json!({"email": "grace@example.com", "name": "Grace"}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = api.get("/v1/assets/users/u-1");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["email"], "grace@example.com");
    let (_, list) = api.get("/v1/assets/users");
    assert_eq!(list["users"].as_array().unwrap().len(), 1, "{list}");
}

#[test]
fn a_csv_import_is_all_rows_or_none() {
    let api = Api::start();
    let csv = "serial,user_email\nC02AAA,grace@example.com\nC02AAA,ada@example.com\n";
    let (status, body) = import(&api, csv);
    assert_eq!(status, 400, "{body}");
    let (_, list) = api.get("/v1/assets/devices");
    assert_eq!(list["devices"], json!([]), "a rejected import wrote rows");
    let csv = "serial,user_email\nC02AAA,grace@example.com\n";
    let (status, body) = import(&api, csv);
    assert_eq!(status, 200, "{body}");
    let (_, list) = api.get("/v1/assets/devices");
    assert_eq!(list["devices"].as_array().unwrap().len(), 1, "{list}");
}

#[test]
fn unknown_records_are_404_naming_them() {
    let api = Api::start();
    for (path, message) in [
        ("/v1/assets/devices/NOPE", "unknown device \"NOPE\""),
        ("/v1/assets/users/nope", "unknown user \"nope\""),
        ("/v1/mdm/commands/nope", "unknown command \"nope\""),
    ] {
        let (status, body) = api.get(path);
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"]["message"], message, "{path}");
    }
}

#[test]
fn showing_escrowed_pins_is_recorded_on_the_devices_timeline_without_the_pin() {
    let api = Api::start();
    let (status, _) = put(
        &api,
        "/v1/assets/devices/C02PIN",
        &json!({"name": "Lost Mac"}),
    );
    assert_eq!(status, 200);
    // A DeviceLock escrowed its PIN (as the mdm target does), through the same file.
    let store = fleetbus_assets::AssetStore::open(&api.assets_path()).unwrap();
    store
        .escrow_pin("C02PIN", "cmd-1", "135790", time::OffsetDateTime::now_utc())
        .unwrap();
    let (status, body) = api.get("/v1/assets/devices/C02PIN");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["escrowed_pins"][0]["pin"], "135790");
    let (_, timeline) = api.get("/v1/timeline?resource=device/C02PIN");
    let events = timeline["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{timeline}");
    let reveal = &events[0]["event"];
    assert_eq!(reveal["source"], "fleetbus.assets");
    assert_eq!(reveal["detail-type"], "DeviceLock PIN Revealed");
    assert_eq!(reveal["detail"]["command_uuids"], json!(["cmd-1"]));
    assert!(!timeline.to_string().contains("135790"), "{timeline}");
    // A device without PINs shows no reveal.
    let (status, _) = put(&api, "/v1/assets/devices/C02NOPIN", &json!({"name": "x"}));
    assert_eq!(status, 200);
    api.get("/v1/assets/devices/C02NOPIN");
    let (_, timeline) = api.get("/v1/timeline?resource=device/C02NOPIN");
    assert_eq!(timeline["events"], json!([]));
}
