//! The asset store against real SQLite files: persistence across reopen, the sample
//! Jamf inventory, all-or-nothing imports and shared use from several threads.

use std::path::Path;

use fleetbus_assets::{
    AssetError, AssetStore, CommandRecord, DeviceFilter, DeviceUpdate, ImportReport, UserUpdate,
};
use time::macros::datetime;
use time::OffsetDateTime;

const NOW: OffsetDateTime = datetime!(2024-05-01 10:00 UTC);

fn inventory() -> std::fs::File {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/inventory.csv");
    std::fs::File::open(path).unwrap()
}

fn serials(store: &AssetStore, filter: DeviceFilter) -> Vec<String> {
    store
        .list_devices(&filter)
        .unwrap()
        .into_iter()
        .map(|d| d.serial)
        .collect()
}

#[test]
fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("assets.db");
    {
        let store = AssetStore::open(&path).unwrap();
        store
            .upsert_device(
                &DeviceUpdate {
                    serial: "C02XK1JHJG5H".into(),
                    udid: Some("UDID-ADA".into()),
                    os_version: Some("14.5".into()),
                    enrollment_state: Some("enrolled".into()),
                    user_id: Some("ada".into()),
                    tags: Some(vec!["eng".into()]),
                    ..DeviceUpdate::default()
                },
                NOW,
            )
            .unwrap();
        store
            .upsert_user(
                &UserUpdate {
                    id: "ada".into(),
                    email: Some("ada@example.com".into()),
                    status: Some("active".into()),
                    ..UserUpdate::default()
                },
                NOW,
            )
            .unwrap();
        store
            .record_command(&CommandRecord {
                command_uuid: "cmd-1".into(),
                request_type: "Settings".into(),
                udid: "UDID-ADA".into(),
                serial: None,
                rule: Some("name-on-enroll".into()),
                target: Some("nanomdm".into()),
                event_id: Some("evt-1".into()),
                enqueued_at: "2024-05-01T10:00:00Z".into(),
                status: None,
                completed_at: None,
            })
            .unwrap();
        store
            .escrow_pin("C02XK1JHJG5H", "cmd-2", "482913", NOW)
            .unwrap();
    }

    let store = AssetStore::open(&path).unwrap();
    let device = store.device_by_udid("UDID-ADA").unwrap().unwrap();
    assert_eq!(device.serial, "C02XK1JHJG5H");
    assert_eq!(device.tags, ["eng"]);
    let ada = store.user_by_email("ADA@example.com").unwrap().unwrap();
    assert_eq!(ada.devices, vec![device]);
    let done = store
        .complete_command("cmd-1", "Acknowledged", datetime!(2024-05-01 10:01 UTC))
        .unwrap()
        .unwrap();
    assert_eq!(done.serial.as_deref(), Some("C02XK1JHJG5H"));
    assert_eq!(done.request_type, "Settings");
    assert_eq!(
        store.escrowed_pins("C02XK1JHJG5H").unwrap()[0].pin,
        "482913"
    );
    let other = rusqlite::Connection::open(&path).unwrap();
    let mode: String = other
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn the_sample_jamf_inventory_imports() {
    let dir = tempfile::tempdir().unwrap();
    let store = AssetStore::open(&dir.path().join("assets.db")).unwrap();
    let report = store.import_csv(inventory(), NOW).unwrap();
    assert_eq!(
        report,
        ImportReport {
            devices: 5,
            users: 3,
            ignored_columns: vec![
                "Model Identifier".into(),
                "Managed".into(),
                "Last Check-in".into()
            ],
        }
    );

    let mac = store.device("C02XK1JHJG5H").unwrap().unwrap();
    assert_eq!(mac.name.as_deref(), Some("Ada's MacBook Pro"));
    assert_eq!(mac.model.as_deref(), Some("MacBook Pro (14-inch, 2021)"));
    assert_eq!(mac.os_version.as_deref(), Some("14.5"));
    assert_eq!(mac.os_build.as_deref(), Some("23F79"));
    assert_eq!(mac.user_id.as_deref(), Some("ada"));
    assert_eq!(
        store
            .serial_for_udid("5B1E4C2A-7D3F-4A8B-9C10-2E6F7A8B9C01")
            .unwrap()
            .as_deref(),
        Some("C02XK1JHJG5H")
    );

    let grace = store
        .user_by_email("grace.hopper@EXAMPLE.com")
        .unwrap()
        .unwrap();
    assert_eq!(grace.user.id, "grace");
    assert_eq!(grace.user.name.as_deref(), Some("Grace Hopper"));
    assert_eq!(grace.devices.len(), 2);

    let below = |v: &str| DeviceFilter {
        os_below: Some(v.into()),
        ..DeviceFilter::default()
    };
    assert_eq!(
        serials(&store, below("13.6")),
        ["C02ZW1ABJV3Q", "FVFHK3Q2Q6L4"]
    );
    assert_eq!(
        serials(&store, below("13.10")),
        ["C02ZW1ABJV3Q", "C07ZP2LMQ6NV", "FVFHK3Q2Q6L4"]
    );
    assert_eq!(
        serials(&store, below("14.5")),
        ["C02ZW1ABJV3Q", "C07ZP2LMQ6NV", "FVFHK3Q2Q6L4", "H4TR7XQ2P1"]
    );

    // Importing again changes nothing but the update time.
    let before = store.device("C02XK1JHJG5H").unwrap().unwrap();
    store
        .import_csv(inventory(), datetime!(2024-05-02 10:00 UTC))
        .unwrap();
    let after = store.device("C02XK1JHJG5H").unwrap().unwrap();
    assert_eq!(after.created_at, before.created_at);
    assert_eq!(after.updated_at, "2024-05-02T10:00:00Z");
    assert_eq!(
        store.list_devices(&DeviceFilter::default()).unwrap().len(),
        5
    );
    assert_eq!(store.list_users().unwrap().len(), 3);
}

#[test]
fn a_bad_import_leaves_the_file_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("assets.db");
    let store = AssetStore::open(&path).unwrap();
    store.import_csv(inventory(), NOW).unwrap();

    let bad = "Serial Number,Computer Name,Username\n\
               C02XK1JHJG5H,renamed,ada\n\
               NEW1,new,zoe\n\
               ,missing,zoe\n\
               NEW1,again,zoe\n";
    let err = store.import_csv(bad.as_bytes(), NOW).unwrap_err();
    assert!(!err.is_retryable());
    let AssetError::Csv { problems } = &err else {
        panic!("expected a csv error, got {err}");
    };
    let lines: Vec<u64> = problems.iter().map(|p| p.line).collect();
    assert_eq!(lines, [4, 5]);
    assert_eq!(
        problems[0].to_string(),
        "line 4, column 1 (`Serial Number`): empty serial"
    );
    drop(store);

    let store = AssetStore::open(&path).unwrap();
    let mac = store.device("C02XK1JHJG5H").unwrap().unwrap();
    assert_eq!(mac.name.as_deref(), Some("Ada's MacBook Pro"));
    assert_eq!(store.device("NEW1").unwrap(), None);
    assert_eq!(store.user("zoe").unwrap(), None);
}

#[test]
fn clones_share_the_store_across_threads() {
    let dir = tempfile::tempdir().unwrap();
    let store = AssetStore::open(&dir.path().join("assets.db")).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    store
                        .upsert_device(
                            &DeviceUpdate {
                                serial: format!("T{t}-{i:02}"),
                                add_tags: vec![format!("thread-{t}")],
                                ..DeviceUpdate::default()
                            },
                            NOW,
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    assert_eq!(
        store.list_devices(&DeviceFilter::default()).unwrap().len(),
        100
    );
    let tagged = DeviceFilter {
        tag: Some("thread-2".into()),
        ..DeviceFilter::default()
    };
    assert_eq!(serials(&store, tagged).len(), 25);
}
