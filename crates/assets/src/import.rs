//! CSV import of an existing inventory: fleetbus's own column names or a Jamf Pro
//! computer inventory export. The whole file is checked first and every problem is
//! reported at once; only a clean file is written, in one transaction.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use time::OffsetDateTime;

use crate::devices::upsert_device_in;
use crate::error::{AssetError, CsvProblem};
use crate::model::{DeviceUpdate, ImportReport, UserUpdate};
use crate::users::{upsert_user_in, user_id_by_email_in};
use crate::{timestamp, AssetStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Field {
    Serial,
    Udid,
    Name,
    Model,
    OsVersion,
    OsBuild,
    EnrollmentState,
    EnrolledAt,
    LastSeen,
    UserId,
    UserEmail,
    UserName,
    Tags,
    Notes,
}

/// The field a header names, matched ignoring case, spaces, underscores and dashes.
fn field_for(header: &str) -> Option<Field> {
    let normalized: String = header
        .chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect();
    Some(match normalized.as_str() {
        "serial" | "serialnumber" => Field::Serial,
        "udid" => Field::Udid,
        "name" | "computername" | "devicename" => Field::Name,
        "model" => Field::Model,
        "osversion" | "operatingsystemversion" => Field::OsVersion,
        "osbuild" | "operatingsystembuild" => Field::OsBuild,
        "enrollmentstate" => Field::EnrollmentState,
        "enrolledat" => Field::EnrolledAt,
        "lastseen" => Field::LastSeen,
        "userid" => Field::UserId,
        // Jamf's one-word "Username" is the login, i.e. the user id; fleetbus's
        // "user_name" (with a separator) is the person's display name.
        "username" if header.contains([' ', '_', '-']) => Field::UserName,
        "username" => Field::UserId,
        "useremail" | "emailaddress" | "email" => Field::UserEmail,
        "fullname" => Field::UserName,
        "tags" => Field::Tags,
        "notes" => Field::Notes,
        _ => return None,
    })
}

/// The header row: which column holds which field.
struct Columns {
    names: Vec<String>,
    fields: HashMap<Field, usize>,
    ignored: Vec<String>,
}

impl Columns {
    fn parse(names: Vec<String>) -> Result<Self, Vec<CsvProblem>> {
        let mut fields = HashMap::new();
        let mut ignored = Vec::new();
        let mut problems = Vec::new();
        for (i, name) in names.iter().enumerate() {
            match field_for(name) {
                Some(field) => {
                    if let Some(&first) = fields.get(&field) {
                        problems.push(CsvProblem {
                            line: 1,
                            column: Some(i + 1),
                            header: Some(name.clone()),
                            message: format!(
                                "names the same field as column {} (`{}`)",
                                first + 1,
                                names[first]
                            ),
                        });
                    } else {
                        fields.insert(field, i);
                    }
                }
                None if name.is_empty() => {}
                None => ignored.push(name.clone()),
            }
        }
        if !fields.contains_key(&Field::Serial) {
            let found = names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ");
            problems.push(CsvProblem {
                line: 1,
                column: None,
                header: None,
                message: format!(
                    "no serial column (`serial` or `Serial Number`); headers found: {found}"
                ),
            });
        }
        if problems.is_empty() {
            Ok(Columns {
                names,
                fields,
                ignored,
            })
        } else {
            Err(problems)
        }
    }

    fn problem(&self, line: u64, field: Field, message: String) -> CsvProblem {
        let column = self.fields.get(&field).copied();
        CsvProblem {
            line,
            column: column.map(|c| c + 1),
            header: column.map(|c| self.names[c].clone()),
            message,
        }
    }
}

/// One checked data row.
struct ImportRow {
    device: DeviceUpdate,
    user_id: Option<String>,
    user_email: Option<String>,
    user_name: Option<String>,
}

/// Reads and checks the whole file; any problem rejects it.
fn parse(input: impl Read) -> Result<(Vec<ImportRow>, Vec<String>), Vec<CsvProblem>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(input);
    let mut record = csv::ByteRecord::new();
    let mut problems = Vec::new();
    let mut columns: Option<Columns> = None;
    let mut rows = Vec::new();
    let mut serials: HashMap<String, u64> = HashMap::new();
    let mut udids: HashMap<String, u64> = HashMap::new();

    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let line = e.position().map_or(0, csv::Position::line);
                problems.push(CsvProblem {
                    line,
                    column: None,
                    header: None,
                    message: format!("cannot read the csv input: {e}"),
                });
                break;
            }
        }
        let line = record.position().map_or(0, csv::Position::line);
        let mut values = Vec::with_capacity(record.len());
        for (i, raw) in record.iter().enumerate() {
            match std::str::from_utf8(raw) {
                Ok(value) => values.push(value.trim().to_string()),
                Err(_) => {
                    problems.push(CsvProblem {
                        line,
                        column: Some(i + 1),
                        header: columns.as_ref().and_then(|c| c.names.get(i).cloned()),
                        message: "not valid utf-8".into(),
                    });
                    values.push(String::new());
                }
            }
        }

        let Some(cols) = &columns else {
            if let Some(first) = values.first_mut() {
                // Spreadsheet exports often start with a byte order mark.
                *first = first.trim_start_matches('\u{feff}').trim().to_string();
            }
            match Columns::parse(values) {
                Ok(parsed) => columns = Some(parsed),
                Err(mut header_problems) => {
                    problems.append(&mut header_problems);
                    return Err(problems);
                }
            }
            continue;
        };

        if values.iter().all(String::is_empty) {
            continue;
        }
        if values.len() != cols.names.len() {
            problems.push(CsvProblem {
                line,
                column: None,
                header: None,
                message: format!(
                    "expected {} fields like the header, found {}",
                    cols.names.len(),
                    values.len()
                ),
            });
            continue;
        }
        let get = |field: Field| -> Option<String> {
            cols.fields
                .get(&field)
                .map(|&i| values[i].clone())
                .filter(|v| !v.is_empty())
        };

        let serial = get(Field::Serial).unwrap_or_default();
        if serial.is_empty() {
            problems.push(cols.problem(line, Field::Serial, "empty serial".into()));
        } else if let Some(first) = serials.insert(serial.clone(), line) {
            serials.insert(serial.clone(), first);
            problems.push(cols.problem(
                line,
                Field::Serial,
                format!("duplicate serial `{serial}`, first on line {first}"),
            ));
        }
        let udid = get(Field::Udid);
        if let Some(udid) = &udid {
            if let Some(first) = udids.insert(udid.clone(), line) {
                udids.insert(udid.clone(), first);
                problems.push(cols.problem(
                    line,
                    Field::Udid,
                    format!("duplicate udid `{udid}`, first on line {first}"),
                ));
            }
        }
        let tags = get(Field::Tags).map(|t| {
            t.split(';')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect()
        });
        rows.push(ImportRow {
            device: DeviceUpdate {
                serial,
                udid,
                name: get(Field::Name),
                model: get(Field::Model),
                os_version: get(Field::OsVersion),
                os_build: get(Field::OsBuild),
                enrollment_state: get(Field::EnrollmentState),
                enrolled_at: get(Field::EnrolledAt),
                tags,
                last_seen: get(Field::LastSeen),
                notes: get(Field::Notes),
                ..DeviceUpdate::default()
            },
            user_id: get(Field::UserId),
            user_email: get(Field::UserEmail),
            user_name: get(Field::UserName),
        });
    }

    match columns {
        _ if !problems.is_empty() => Err(problems),
        None => Err(vec![CsvProblem {
            line: 1,
            column: None,
            header: None,
            message: "empty input: expected a header row with a serial column".into(),
        }]),
        Some(cols) => Ok((rows, cols.ignored)),
    }
}

impl AssetStore {
    /// Imports an inventory CSV whose first row is a header. Headers match ignoring case,
    /// spaces, underscores and dashes: fleetbus names (`serial`, `udid`, `name`, `model`,
    /// `os_version`, `os_build`, `enrollment_state`, `enrolled_at`, `last_seen`,
    /// `user_id`, `user_email`, `user_name`, `tags` separated by `;`, `notes`) or a Jamf
    /// Pro computer export ("Serial Number", "Computer Name", "Model", "Operating System
    /// Version", "Operating System Build", "UDID", "Username", "Email Address", "Full
    /// Name"). One-word "Username" is the user id; "user_name" is the display name.
    /// Other columns are ignored and listed in the report.
    ///
    /// A user column creates or updates the user (id = username; without a username, the
    /// existing user with that email, else the email itself) and assigns the device.
    /// Empty cells keep stored values; blank rows are skipped. All or nothing: an empty
    /// serial, a serial or UDID repeated in the file, a row with the wrong number of
    /// fields or invalid UTF-8 rejects the file with every problem listed.
    pub fn import_csv(
        &self,
        input: impl Read,
        now: OffsetDateTime,
    ) -> Result<ImportReport, AssetError> {
        const OP: &str = "import_csv";
        let now = timestamp(now)?;
        let (rows, ignored_columns) =
            parse(input).map_err(|problems| AssetError::Csv { problems })?;
        self.write(OP, |tx| {
            let mut users = HashSet::new();
            for row in &rows {
                let user_id = match (&row.user_id, &row.user_email) {
                    (Some(id), _) => Some(id.clone()),
                    (None, Some(email)) => Some(
                        user_id_by_email_in(tx, email)
                            .map_err(|source| AssetError::Sqlite { op: OP, source })?
                            .unwrap_or_else(|| email.clone()),
                    ),
                    (None, None) => None,
                };
                if let Some(id) = &user_id {
                    let update = UserUpdate {
                        id: id.clone(),
                        email: row.user_email.clone(),
                        name: row.user_name.clone(),
                        status: None,
                    };
                    upsert_user_in(tx, &update, &now)?;
                    users.insert(id.clone());
                }
                let device = DeviceUpdate {
                    user_id,
                    ..row.device.clone()
                };
                upsert_device_in(tx, &device, &now)?;
            }
            Ok(ImportReport {
                devices: rows.len(),
                users: users.len(),
                ignored_columns,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2024-05-01 10:00 UTC);

    fn import(csv: &str) -> (AssetStore, Result<ImportReport, AssetError>) {
        let store = AssetStore::open_in_memory().unwrap();
        let result = store.import_csv(csv.as_bytes(), NOW);
        (store, result)
    }

    #[test]
    fn headers_match_loosely() {
        assert_eq!(field_for("Serial Number"), Some(Field::Serial));
        assert_eq!(field_for("SERIAL_NUMBER"), Some(Field::Serial));
        assert_eq!(field_for("os-version"), Some(Field::OsVersion));
        assert_eq!(field_for("Username"), Some(Field::UserId));
        assert_eq!(field_for("user_name"), Some(Field::UserName));
        assert_eq!(field_for("Full Name"), Some(Field::UserName));
        assert_eq!(field_for("Email Address"), Some(Field::UserEmail));
        assert_eq!(field_for("Asset Tag"), None);
    }

    #[test]
    fn fleetbus_headers_import_with_tags_and_users() {
        let (store, report) = import(
            "\u{feff}serial,udid,name,os_version,enrollment_state,user_id,user_email,user_name,tags,notes,color\n\
             C02AAA,U-1,Ada's Mac,14.5,enrolled,ada,ada@example.com,Ada Lovelace,eng; berlin ;,spare charger,red\n\
             ,,,,,,,,,,\n\
             C02BBB,,,13.6.7,,,grace@example.com,,,,\n",
        );
        let report = report.unwrap();
        assert_eq!(
            report,
            ImportReport {
                devices: 2,
                users: 2,
                ignored_columns: vec!["color".into()]
            }
        );
        let ada = store.device("C02AAA").unwrap().unwrap();
        assert_eq!(ada.tags, ["eng", "berlin"]);
        assert_eq!(ada.user_id.as_deref(), Some("ada"));
        assert_eq!(ada.notes.as_deref(), Some("spare charger"));
        assert_eq!(
            store.serial_for_udid("U-1").unwrap().as_deref(),
            Some("C02AAA")
        );
        // Without a username, the email becomes the user id.
        let grace = store.user("grace@example.com").unwrap().unwrap();
        assert_eq!(grace.devices.len(), 1);
        assert_eq!(
            store.user("ada").unwrap().unwrap().user.name.as_deref(),
            Some("Ada Lovelace")
        );
    }

    #[test]
    fn email_only_rows_join_the_existing_user() {
        let store = AssetStore::open_in_memory().unwrap();
        store
            .upsert_user(
                &UserUpdate {
                    id: "grace".into(),
                    email: Some("Grace@Example.com".into()),
                    ..UserUpdate::default()
                },
                NOW,
            )
            .unwrap();
        store
            .import_csv(
                "serial,user_email\nC02BBB,grace@example.com\n".as_bytes(),
                NOW,
            )
            .unwrap();
        assert_eq!(store.user("grace").unwrap().unwrap().devices.len(), 1);
        assert_eq!(store.list_users().unwrap().len(), 1);
    }

    #[test]
    fn every_problem_is_reported_with_its_place_and_nothing_is_written() {
        let (store, result) = import(
            "serial,udid,name\n\
             C02AAA,U-1,one\n\
             ,U-2,two\n\
             C02AAA,U-3,three\n\
             C02DDD,U-1,four\n\
             C02EEE,U-5\n\
             C02FFF,U-6,six\n",
        );
        let err = result.unwrap_err();
        let problems: Vec<String> = err
            .csv_problems()
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            problems,
            [
                "line 3, column 1 (`serial`): empty serial",
                "line 4, column 1 (`serial`): duplicate serial `C02AAA`, first on line 2",
                "line 5, column 2 (`udid`): duplicate udid `U-1`, first on line 2",
                "line 6: expected 3 fields like the header, found 2",
            ]
        );
        assert!(err
            .to_string()
            .starts_with("csv import rejected, nothing written (4 problems): line 3"));
        assert!(store.list_devices(&Default::default()).unwrap().is_empty());
        assert_eq!(store.serial_for_udid("U-6").unwrap(), None);
    }

    #[test]
    fn header_problems_name_the_headers_found() {
        let (_, result) = import("Computer Name,Model\nmac,MacBookAir10,1\n");
        let err = result.unwrap_err().to_string();
        assert!(
            err.contains("line 1: no serial column") && err.contains("`Computer Name`, `Model`"),
            "{err}"
        );
        let (_, result) = import("serial,Serial Number\n");
        let err = result.unwrap_err().to_string();
        assert!(
            err.contains(
                "line 1, column 2 (`Serial Number`): names the same field as column 1 (`serial`)"
            ),
            "{err}"
        );
        let (_, result) = import("");
        assert!(result.unwrap_err().to_string().contains("empty input"));
    }

    #[test]
    fn invalid_utf8_is_a_located_problem() {
        let store = AssetStore::open_in_memory().unwrap();
        let err = store
            .import_csv(&b"serial,name\nC02AAA,caf\xe9\n"[..], NOW)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("line 2, column 2 (`name`): not valid utf-8"),
            "{err}"
        );
    }

    fn csvish() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            any::<Vec<u8>>(),
            "(serial|Serial Number|udid|Username|Email Address|tags|x)(,(serial|udid|Username|user_name|tags|x)){0,4}\n([a-c,;\"\r\n \u{feff}]{0,60})"
                .prop_map(String::into_bytes),
        ]
    }

    proptest! {
        #[test]
        fn no_input_panics(input in csvish()) {
            let store = AssetStore::open_in_memory().unwrap();
            match store.import_csv(input.as_slice(), NOW) {
                Ok(report) => {
                    let stored = store.list_devices(&Default::default()).unwrap().len();
                    prop_assert_eq!(stored, report.devices);
                }
                Err(err) => {
                    prop_assert!(err.csv_problems().is_some(), "{}", err);
                    prop_assert!(store.list_devices(&Default::default()).unwrap().is_empty());
                }
            }
        }
    }
}
