//! The service definitions shipped in `dist/` start fleetbus with flags the binary
//! takes: a launchd plist that parses, a systemd unit with its sections.

use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .parent()
        .unwrap()
}

/// The flags `fleetbus serve --help` lists.
fn serve_help() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbus"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_serve_args(args: &[String]) {
    assert!(args[0].ends_with("/fleetbus"), "{args:?}");
    assert_eq!(args[1], "serve", "{args:?}");
    let help = serve_help();
    for a in args[2..].iter().filter(|a| a.starts_with('-')) {
        assert!(
            help.contains(a.as_str()),
            "fleetbus serve takes no {a}:\n{help}"
        );
    }
}

#[test]
fn the_launchd_plist_parses_and_runs_fleetbus_serve() {
    let path = repo().join("dist/io.fleetbus.serve.plist");
    let v: plist::Value = plist::from_file(&path).expect("a valid property list");
    let d = v.as_dictionary().unwrap();
    assert_eq!(d["Label"].as_string(), Some("io.fleetbus.serve"));
    let args: Vec<String> = d["ProgramArguments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_string().unwrap().to_owned())
        .collect();
    assert_serve_args(&args);
    assert_eq!(d["RunAtLoad"].as_boolean(), Some(true));
}

#[test]
fn the_systemd_unit_runs_fleetbus_serve_and_reloads_with_hup() {
    let text = std::fs::read_to_string(repo().join("dist/fleetbus.service")).unwrap();
    for section in ["[Unit]", "[Service]", "[Install]"] {
        assert!(text.contains(section), "no {section}");
    }
    let exec = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let args: Vec<String> = exec.split_whitespace().map(str::to_owned).collect();
    assert_serve_args(&args);
    assert!(text.contains("ExecReload=/bin/kill -HUP $MAINPID"));
}
