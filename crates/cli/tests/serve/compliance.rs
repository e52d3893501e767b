//! The three cloud-compliance automations of `examples/aws-compliance/`, end to
//! end: the shipped configuration and handlers (copied, with the test's
//! endpoints), CloudTrail events in the shape EventBridge delivers them, and moto's
//! AWS emulator on loopback standing in for AWS. The bucket really ends up
//! encrypted, the instance really tagged and in the group, exempt resources are
//! untouched, dry run changes nothing, and every remediation is an event on the
//! resource's timeline. `scripts/test` installs boto3 and moto[server].

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fleetbus_test_support::smtp;
use serde_json::{json, Value};

use super::support::*;

/// moto's server on a free loopback port, stopped on drop.
struct Moto {
    child: Child,
    url: String,
}

impl Moto {
    fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m moto.server (scripts/test installs moto[server])");
        wait_for("moto's server", Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Runs `code` with boto3 clients `s3` and `ec2` on moto; returns what it
    /// prints (JSON).
    fn py(&self, code: &str) -> Value {
        let prelude = format!(
            "import boto3, json\nkw = dict(endpoint_url={:?}, region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\ns3 = boto3.client('s3', **kw)\nec2 = boto3.client('ec2', **kw)\n",
            self.url
        );
        let out = Command::new("python3")
            .arg("-c")
            .arg(prelude + code)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/aws-compliance")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// The shipped sample event `name`, with a fresh id and `edit` applied.
fn sample(name: &str, edit: impl FnOnce(String) -> String) -> Vec<u8> {
    let text = std::fs::read_to_string(example_dir().join("events").join(name)).unwrap();
    let mut event: Value = serde_json::from_str(&edit(text)).unwrap();
    event["id"] = json!(uuid_like());
    event.to_string().into_bytes()
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!(
        "00000000-0000-4000-8000-{:012x}",
        n + std::process::id() as u64 * 1000
    )
}

fn post(server: &Server, body: &[u8]) {
    let (status, answer) = server.post(
        "/v1/sources/aws",
        None,
        "application/json",
        body,
        &[("X-Api-Key", SOURCE_TOKEN)],
    );
    assert_eq!(status, 200, "{answer}");
}

fn remediations(server: &Server, resource: &str) -> Vec<Value> {
    timeline(server, resource)
        .into_iter()
        .filter(|e| e["event"]["source"] == "fleetbus.remediation")
        .map(|e| e["event"].clone())
        .collect()
}

#[test]
fn the_three_compliance_automations_remediate_skip_and_report() {
    let moto = Moto::start();
    let world = moto.py(
        "sg = ec2.create_security_group(GroupName='administrators', Description='admins')['GroupId']\n\
         for b in ['team-reports-2026', 'public-website-assets', 'lab-scratch', 'already-encrypted', 'dry-bucket']:\n    s3.create_bucket(Bucket=b)\n\
         s3.put_bucket_tagging(Bucket='lab-scratch', Tagging={'TagSet': [{'Key': 'compliance-exempt', 'Value': 'true'}]})\n\
         s3.put_bucket_encryption(Bucket='already-encrypted', ServerSideEncryptionConfiguration={'Rules': [{'ApplyServerSideEncryptionByDefault': {'SSEAlgorithm': 'aws:kms'}}]})\n\
         plain = ec2.run_instances(ImageId='ami-12c6146b', MinCount=1, MaxCount=1)['Instances'][0]['InstanceId']\n\
         exempt = ec2.run_instances(ImageId='ami-12c6146b', MinCount=1, MaxCount=1, TagSpecifications=[{'ResourceType': 'instance', 'Tags': [{'Key': 'compliance-exempt', 'Value': 'true'}]}])['Instances'][0]['InstanceId']\n\
         print(json.dumps({'sg': sg, 'plain': plain, 'exempt': exempt}))",
    );
    let (sg, plain, exempt) = (
        world["sg"].as_str().unwrap().to_owned(),
        world["plain"].as_str().unwrap().to_owned(),
        world["exempt"].as_str().unwrap().to_owned(),
    );

    let tmp = tempfile::tempdir().unwrap();
    let rx = receiver();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (smtp_port, mails) = rt.block_on(smtp::start(smtp::Mode::Plain, "250 ok\r\n", None));
    let secrets = tmp.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("api-token"), TOKEN).unwrap();
    std::fs::write(secrets.join("source-token"), SOURCE_TOKEN).unwrap();
    std::fs::write(
        secrets.join("slack-webhook-url"),
        format!("{}/hook", rx.url),
    )
    .unwrap();
    let dir = tmp.path().join("aws-compliance");
    copy_dir(&example_dir(), &dir);
    // The shipped policy, with the group moto made.
    let policy_path = dir.join("policy.json");
    let policy = std::fs::read_to_string(&policy_path)
        .unwrap()
        .replace("sg-0123456789abcdef0", &sg);
    std::fs::write(&policy_path, &policy).unwrap();
    // The shipped configuration, pointed at the test's endpoints.
    edit_config(&dir, |c| {
        c.replace("port: 25", &format!("port: {smtp_port}"))
            .replace("../../fleetbus-data/aws-compliance", "data")
            .replace(
                "examples/aws-compliance/",
                &format!("{}/", dir.display()),
            )
            .replace(
                "          AWS_DEFAULT_REGION: us-east-1\n",
                &format!("          AWS_DEFAULT_REGION: us-east-1\n          AWS_ENDPOINT_URL: {}\n          AWS_ACCESS_KEY_ID: testing\n          AWS_SECRET_ACCESS_KEY: testing\n", moto.url),
            )
    });
    let server = Server::start(&dir);

    // 1. A VPC created: email and Slack name it, the account, region and creator.
    post(&server, &sample("create-vpc.json", |t| t));
    wait_for(
        "the VPC mail and Slack message",
        Duration::from_secs(30),
        || {
            !mails.lock().unwrap().is_empty()
                && rx
                    .bodies
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|(b, _)| b["text"].as_str().is_some_and(|t| t.starts_with("VPC ")))
        },
    );
    // Long header lines arrive folded (RFC 5322): unfolded to compare.
    let mail = mails.lock().unwrap()[0]
        .data
        .replace("\r\n ", " ")
        .replace("\n ", " ");
    assert!(
        mail.contains("Subject: VPC vpc-0a1b2c3d4e5f60718 created in 111122223333 us-east-1 by arn:aws:iam::111122223333:user/jdoe"),
        "{mail}"
    );
    assert!(
        mail.contains("VPC: vpc-0a1b2c3d4e5f60718 (10.42.0.0/16)"),
        "{mail}"
    );
    let slack = rx
        .bodies
        .lock()
        .unwrap()
        .iter()
        .find(|(b, _)| b["text"].as_str().is_some_and(|t| t.starts_with("VPC ")))
        .unwrap()
        .0
        .clone();
    assert_eq!(
        slack["text"],
        "VPC vpc-0a1b2c3d4e5f60718 (10.42.0.0/16) created in account 111122223333, us-east-1, by arn:aws:iam::111122223333:user/jdoe"
    );

    // 2. Buckets: one fixed, two exempt (by name, by tag), one already compliant,
    //    one that no longer exists.
    for bucket in [
        "team-reports-2026",
        "public-website-assets",
        "lab-scratch",
        "already-encrypted",
        "vanished-bucket",
    ] {
        post(
            &server,
            &sample("create-bucket.json", |t| {
                t.replace("team-reports-2026", bucket)
            }),
        );
    }
    // 3. Instances: one configured, one exempt by tag.
    for instance in [&plain, &exempt] {
        post(
            &server,
            &sample("run-instances.json", |t| {
                t.replace("i-0123456789abcdef0", instance)
            }),
        );
    }
    let log = dir.join("data/remediations.log");
    wait_for("seven remediation events", Duration::from_secs(60), || {
        lines(&log).len() >= 7
    });

    let state = moto.py(&format!(
        "def enc(b):\n    try:\n        return s3.get_bucket_encryption(Bucket=b)['ServerSideEncryptionConfiguration']['Rules'][0]['ApplyServerSideEncryptionByDefault']['SSEAlgorithm']\n    except Exception:\n        return None\n\
         def inst(i):\n    d = ec2.describe_instances(InstanceIds=[i])['Reservations'][0]['Instances'][0]\n    return {{'tags': {{t['Key']: t['Value'] for t in d.get('Tags', [])}}, 'groups': [g['GroupId'] for g in d.get('SecurityGroups', [])]}}\n\
         print(json.dumps({{'enc': {{b: enc(b) for b in ['team-reports-2026', 'public-website-assets', 'lab-scratch', 'already-encrypted']}}, 'plain': inst({plain:?}), 'exempt': inst({exempt:?})}}))"
    ));
    assert_eq!(
        state["enc"],
        json!({"team-reports-2026": "AES256", "public-website-assets": null, "lab-scratch": null, "already-encrypted": "aws:kms"}),
        "{state}"
    );
    assert_eq!(
        state["plain"]["tags"],
        json!({"owner": "unassigned", "cost-center": "it-shared"})
    );
    assert!(
        state["plain"]["groups"]
            .as_array()
            .unwrap()
            .contains(&json!(sg)),
        "{state}"
    );
    assert_eq!(
        state["exempt"]["tags"],
        json!({"compliance-exempt": "true"}),
        "exempt: untouched"
    );
    assert!(!state["exempt"]["groups"]
        .as_array()
        .unwrap()
        .contains(&json!(sg)));

    let outcome = |resource: &str| -> Vec<(String, Value)> {
        remediations(&server, resource)
            .into_iter()
            .map(|e| {
                (
                    e["detail-type"].as_str().unwrap().to_owned(),
                    e["detail"].clone(),
                )
            })
            .collect()
    };
    let fixed = outcome("aws/s3/team-reports-2026");
    assert_eq!(fixed.len(), 1, "{fixed:?}");
    assert_eq!(fixed[0].0, "Remediation Applied");
    assert_eq!(fixed[0].1["fixed"], "default encryption (AES256) enabled");
    assert_eq!(
        fixed[0].1["actor"],
        "arn:aws:sts::111122223333:assumed-role/Developers/jdoe"
    );
    let skipped = |resource: &str, reason: &str| {
        let got = outcome(resource);
        assert_eq!(got.len(), 1, "{resource}: {got:?}");
        assert_eq!(got[0].0, "Remediation Skipped", "{resource}");
        assert_eq!(got[0].1["reason"], reason, "{resource}: {got:?}");
        got[0].1.clone()
    };
    assert_eq!(
        skipped("aws/s3/public-website-assets", "exempt")["why"],
        "public-website-assets is listed in exempt_resources"
    );
    assert_eq!(
        skipped("aws/s3/lab-scratch", "exempt")["why"],
        "tagged compliance-exempt=true"
    );
    assert_eq!(
        skipped("aws/s3/already-encrypted", "already compliant")["why"],
        "default encryption is aws:kms"
    );
    let failed = outcome("aws/s3/vanished-bucket");
    assert_eq!(failed[0].0, "Remediation Failed", "{failed:?}");
    assert_eq!(failed[0].1["error"], "NoSuchBucket");
    let configured = outcome(&format!("aws/ec2/{plain}"));
    assert_eq!(configured[0].0, "Remediation Applied", "{configured:?}");
    assert_eq!(
        configured[0].1["fixed"],
        format!("added tags cost-center=it-shared, owner=unassigned and security group {sg}")
    );
    skipped(&format!("aws/ec2/{exempt}"), "exempt");

    // Encryption removed again: put back, a second event on the bucket's timeline.
    moto.py("s3.delete_bucket_encryption(Bucket='team-reports-2026')\nprint('null')");
    post(&server, &sample("delete-bucket-encryption.json", |t| t));
    wait_for("the second fix", Duration::from_secs(30), || {
        outcome("aws/s3/team-reports-2026").len() == 2
    });
    let again = moto.py("print(json.dumps(s3.get_bucket_encryption(Bucket='team-reports-2026')['ServerSideEncryptionConfiguration']['Rules'][0]['ApplyServerSideEncryptionByDefault']['SSEAlgorithm']))");
    assert_eq!(again, "AES256");
    assert_eq!(
        outcome("aws/s3/team-reports-2026")[0].1["trigger"],
        "DeleteBucketEncryption"
    );

    // Dry run: reported, nothing changed.
    std::fs::write(
        &policy_path,
        policy.replace("\"dry_run\": false", "\"dry_run\": true"),
    )
    .unwrap();
    post(
        &server,
        &sample("create-bucket.json", |t| {
            t.replace("team-reports-2026", "dry-bucket")
        }),
    );
    wait_for("the dry run", Duration::from_secs(30), || {
        !outcome("aws/s3/dry-bucket").is_empty()
    });
    let dry = skipped("aws/s3/dry-bucket", "dry-run");
    assert_eq!(dry["would"], "enable default encryption (AES256)");
    let untouched = moto.py("try:\n    s3.get_bucket_encryption(Bucket='dry-bucket')\n    print('\"changed\"')\nexcept Exception:\n    print('\"untouched\"')");
    assert_eq!(untouched, "untouched");

    // Every remediation is in the log, and notified.
    assert_eq!(lines(&log).len(), 9);
    wait_for("the remediation notices", Duration::from_secs(30), || {
        rx.bodies
            .lock()
            .unwrap()
            .iter()
            .filter(|(b, _)| {
                b["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("Remediation "))
            })
            .count()
            == 9
    });
    server.stop();
}
