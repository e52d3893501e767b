//! Semantics tests, mostly the examples of the AWS EventBridge "event patterns"
//! documentation, run through the compiled matcher and the explainer (which must agree).

use crate::{explain, Matcher, Pattern};

/// Matches one pattern against one event both ways and checks they agree.
fn m(pattern: &str, event: &str) -> bool {
    let p = Pattern::parse(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
    let mut mm = Matcher::new();
    mm.add_pattern(1u32, &p).unwrap();
    let got = !mm.matches_for_event(event.as_bytes()).unwrap().is_empty();
    let ex = explain(&p, event.as_bytes()).unwrap();
    assert_eq!(
        got, ex.matched,
        "matcher and explain disagree on {pattern} / {event}:\n{ex}"
    );
    got
}

const EC2: &str = r#"{
  "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
  "detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2",
  "account": "111122223333", "time": "2017-12-22T18:43:48Z", "region": "us-west-1",
  "resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"],
  "detail": {"instance-id": "i-1234567890abcdef0", "state": "terminated",
    "c-count": 5, "d-count": 7, "x-limit": 301.8, "source-ip": "10.0.0.123",
    "responseElements": null, "eventVersion": "", "FileName": "image.png",
    "tags": ["a", "b"], "location": {"region": "eu-west-1"}}
}"#;

#[test]
fn exact_values_and_and_or() {
    assert!(m(r#"{"source": ["aws.ec2"]}"#, EC2));
    assert!(m(r#"{"source": ["aws.s3", "aws.ec2"]}"#, EC2));
    assert!(!m(r#"{"source": ["aws.s3"]}"#, EC2));
    assert!(m(
        r#"{"source": ["aws.ec2"], "detail": {"state": ["terminated"]}}"#,
        EC2
    ));
    assert!(!m(
        r#"{"source": ["aws.ec2"], "detail": {"state": ["running"]}}"#,
        EC2
    ));
    // Fields not named are ignored; a named field that is missing fails.
    assert!(!m(r#"{"detail": {"missing": ["x"]}}"#, EC2));
    // Arrays in the event: any element.
    assert!(m(
        r#"{"resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"]}"#,
        EC2
    ));
    assert!(m(r#"{"detail": {"tags": ["b", "z"]}}"#, EC2));
    assert!(!m(r#"{"detail": {"tags": ["z"]}}"#, EC2));
}

#[test]
fn empty_string_and_null() {
    assert!(m(r#"{"detail": {"eventVersion": [""]}}"#, EC2));
    assert!(!m(r#"{"detail": {"state": [""]}}"#, EC2));
    assert!(!m(r#"{"detail": {"responseElements": [""]}}"#, EC2));
    assert!(m(r#"{"detail": {"responseElements": [null]}}"#, EC2));
    assert!(!m(r#"{"detail": {"missing": [null]}}"#, EC2));
    assert!(!m(r#"{"detail": {"eventVersion": [null]}}"#, EC2));
}

#[test]
fn numbers_compare_numerically() {
    assert!(m(r#"{"detail": {"c-count": [5]}}"#, EC2));
    assert!(m(r#"{"detail": {"c-count": [5.0]}}"#, EC2));
    assert!(m(r#"{"detail": {"c-count": [5e0]}}"#, EC2));
    assert!(m(r#"{"detail": {"x-limit": [3.018e2]}}"#, EC2));
    assert!(m(r#"{"a": [300]}"#, r#"{"a": 3.0e2}"#));
    assert!(m(r#"{"a": [3e2]}"#, r#"{"a": 300.000}"#));
    assert!(m(r#"{"a": [0]}"#, r#"{"a": -0.0}"#));
    // Strings and numbers never equal each other.
    assert!(!m(r#"{"a": ["300"]}"#, r#"{"a": 300}"#));
    assert!(!m(r#"{"a": [300]}"#, r#"{"a": "300"}"#));
    assert!(m(r#"{"a": [true]}"#, r#"{"a": true}"#));
    assert!(!m(r#"{"a": [true]}"#, r#"{"a": "true"}"#));
    assert!(!m(r#"{"a": [false]}"#, r#"{"a": true}"#));
}

#[test]
fn numeric_ranges() {
    let p = r#"{"detail": {"c-count": [{"numeric": [">", 0, "<=", 5]}], "d-count": [{"numeric": ["<", 10]}], "x-limit": [{"numeric": ["=", 3.018e2]}]}}"#;
    assert!(m(p, EC2));
    assert!(!m(
        r#"{"detail": {"c-count": [{"numeric": [">", 5]}]}}"#,
        EC2
    ));
    assert!(m(
        r#"{"detail": {"c-count": [{"numeric": [">=", 5]}]}}"#,
        EC2
    ));
    assert!(!m(
        r#"{"detail": {"c-count": [{"numeric": ["<", 5]}]}}"#,
        EC2
    ));
    assert!(m(
        r#"{"a": [{"numeric": [">=", -5e9, "<=", 5e9]}]}"#,
        r#"{"a": -5e9}"#
    ));
    // Outside EventBridge's range an event number matches no numeric condition.
    assert!(!m(r#"{"a": [{"numeric": [">", 0]}]}"#, r#"{"a": 5.1e9}"#));
    // Six digits right of the decimal point.
    assert!(!m(
        r#"{"a": [{"numeric": [">", 0]}]}"#,
        r#"{"a": 0.0000001}"#
    ));
    assert!(m(r#"{"a": [{"numeric": [">", 0]}]}"#, r#"{"a": 0.000001}"#));
    // Strings are not numbers.
    assert!(!m(r#"{"a": [{"numeric": [">", 0]}]}"#, r#"{"a": "5"}"#));
}

#[test]
fn prefix_suffix_ignore_case() {
    assert!(m(r#"{"time": [{"prefix": "2017-12-22"}]}"#, EC2));
    assert!(!m(r#"{"time": [{"prefix": "2017-10-02"}]}"#, EC2));
    assert!(m(
        r#"{"source": [{"prefix": {"equals-ignore-case": "AWS.EC"}}]}"#,
        EC2
    ));
    assert!(m(r#"{"detail": {"FileName": [{"suffix": ".png"}]}}"#, EC2));
    assert!(!m(r#"{"detail": {"FileName": [{"suffix": ".PNG"}]}}"#, EC2));
    assert!(m(
        r#"{"detail": {"FileName": [{"suffix": {"equals-ignore-case": ".PNG"}}]}}"#,
        EC2
    ));
    assert!(m(
        r#"{"detail-type": [{"equals-ignore-case": "ec2 instance state-change notification"}]}"#,
        EC2
    ));
    assert!(!m(
        r#"{"detail-type": [{"equals-ignore-case": "ec2 instance"}]}"#,
        EC2
    ));
    assert!(m(
        r#"{"a": [{"equals-ignore-case": "STRASSE ÄÖ"}]}"#,
        r#"{"a": "strasse äö"}"#
    ));
    // Prefix applies to strings only.
    assert!(!m(r#"{"a": [{"prefix": "1"}]}"#, r#"{"a": 123}"#));
    assert!(m(r#"{"a": [{"prefix": ""}]}"#, r#"{"a": "x"}"#));
}

#[test]
fn wildcard_with_escapes() {
    assert!(m(
        r#"{"EventBusArn": [{"wildcard": "arn:aws:events:us-east-1:*:event-bus/*"}]}"#,
        r#"{"EventBusArn": "arn:aws:events:us-east-1:123456789012:event-bus/main"}"#
    ));
    assert!(m(
        r#"{"a": [{"wildcard": "dir/*.png"}]}"#,
        r#"{"a": "dir/x.png"}"#
    ));
    assert!(!m(
        r#"{"a": [{"wildcard": "dir/*.png"}]}"#,
        r#"{"a": "dir/x.jpg"}"#
    ));
    assert!(m(r#"{"a": [{"wildcard": "a\\*b"}]}"#, r#"{"a": "a*b"}"#));
    assert!(!m(r#"{"a": [{"wildcard": "a\\*b"}]}"#, r#"{"a": "axxb"}"#));
    assert!(m(r#"{"a": [{"wildcard": "a\\\\*"}]}"#, r#"{"a": "a\\bc"}"#));
    // Escapes in the event are decoded before matching.
    assert!(m(
        r#"{"a": [{"wildcard": "*\\**"}]}"#,
        r#"{"a": "x\u002ay"}"#
    ));
    assert!(m(r#"{"a": ["é\"q"]}"#, r#"{"a": "\u00e9\"q"}"#));
}

#[test]
fn anything_but_forms() {
    assert!(m(
        r#"{"detail": {"state": [{"anything-but": "initializing"}]}}"#,
        EC2
    ));
    assert!(!m(
        r#"{"detail": {"state": [{"anything-but": "terminated"}]}}"#,
        EC2
    ));
    assert!(!m(
        r#"{"detail": {"state": [{"anything-but": ["stopped", "terminated"]}]}}"#,
        EC2
    ));
    assert!(m(
        r#"{"detail": {"c-count": [{"anything-but": [1, 2]}]}}"#,
        EC2
    ));
    assert!(!m(
        r#"{"detail": {"c-count": [{"anything-but": 5e0}]}}"#,
        EC2
    ));
    assert!(m(
        r#"{"detail": {"state": [{"anything-but": {"prefix": "init"}}]}}"#,
        EC2
    ));
    assert!(!m(
        r#"{"detail": {"state": [{"anything-but": {"prefix": "term"}}]}}"#,
        EC2
    ));
    assert!(!m(
        r#"{"detail": {"FileName": [{"anything-but": {"suffix": ".png"}}]}}"#,
        EC2
    ));
    assert!(m(
        r#"{"detail": {"FileName": [{"anything-but": {"suffix": ".txt"}}]}}"#,
        EC2
    ));
    assert!(!m(
        r#"{"a": [{"anything-but": {"wildcard": "*/lib/*"}}]}"#,
        r#"{"a": "/usr/lib/x"}"#
    ));
    assert!(m(
        r#"{"a": [{"anything-but": {"wildcard": ["*/lib/*", "*.so"]}}]}"#,
        r#"{"a": "/usr/bin/x"}"#
    ));
    assert!(!m(
        r#"{"detail": {"state": [{"anything-but": {"equals-ignore-case": ["Stopped", "TERMINATED"]}}]}}"#,
        EC2
    ));
    assert!(m(
        r#"{"detail": {"state": [{"anything-but": {"equals-ignore-case": "Stopped"}}]}}"#,
        EC2
    ));
    // A missing field is not "anything but".
    assert!(!m(
        r#"{"detail": {"missing": [{"anything-but": "x"}]}}"#,
        EC2
    ));
    // Event arrays: any element that is not excluded.
    assert!(m(r#"{"detail": {"tags": [{"anything-but": "a"}]}}"#, EC2));
    assert!(!m(
        r#"{"a": [{"anything-but": ["x", "y"]}]}"#,
        r#"{"a": ["x", "y"]}"#
    ));
}

#[test]
fn exists_is_leaf_only() {
    assert!(m(r#"{"detail": {"state": [{"exists": true}]}}"#, EC2));
    assert!(!m(r#"{"detail": {"state": [{"exists": false}]}}"#, EC2));
    assert!(m(r#"{"detail": {"nope": [{"exists": false}]}}"#, EC2));
    assert!(!m(r#"{"detail": {"nope": [{"exists": true}]}}"#, EC2));
    // An object is not a leaf: it does not "exist" for the exists operator.
    assert!(!m(r#"{"detail": {"location": [{"exists": true}]}}"#, EC2));
    assert!(m(r#"{"detail": {"location": [{"exists": false}]}}"#, EC2));
    assert!(m(r#"{"detail": [{"exists": false}]}"#, EC2));
    // null is a value; an empty array holds none.
    assert!(m(
        r#"{"detail": {"responseElements": [{"exists": true}]}}"#,
        EC2
    ));
    assert!(m(r#"{"a": [{"exists": false}]}"#, r#"{"a": []}"#));
    assert!(m(r#"{"a": [{"exists": true}]}"#, r#"{"a": [[], 1]}"#));
    // exists false next to a value: absent or equal.
    let p = r#"{"a": [{"exists": false}, "x"]}"#;
    assert!(m(p, r#"{"b": 1}"#));
    assert!(m(p, r#"{"a": "x"}"#));
    assert!(!m(p, r#"{"a": "y"}"#));
    // Only exists:false fields, with an unrelated positive field.
    assert!(m(
        r#"{"source": ["aws.ec2"], "detail": {"nope": [{"exists": false}]}}"#,
        EC2
    ));
    assert!(!m(
        r#"{"source": ["aws.s3"], "detail": {"nope": [{"exists": false}]}}"#,
        EC2
    ));
}

#[test]
fn cidr_v4_and_v6() {
    assert!(m(
        r#"{"detail": {"source-ip": [{"cidr": "10.0.0.0/24"}]}}"#,
        EC2
    ));
    assert!(!m(
        r#"{"detail": {"source-ip": [{"cidr": "10.0.1.0/24"}]}}"#,
        EC2
    ));
    assert!(m(
        r#"{"ip": [{"cidr": "2001:db8::/64"}]}"#,
        r#"{"ip": "2001:db8::ff00:42:8329"}"#
    ));
    assert!(m(
        r#"{"ip": [{"cidr": "2001:db8::/64"}]}"#,
        r#"{"ip": "2001:0db8:0000:0000:1:2:3:4"}"#
    ));
    assert!(!m(
        r#"{"ip": [{"cidr": "2001:db8::/64"}]}"#,
        r#"{"ip": "2001:db8:0:1::1"}"#
    ));
    assert!(!m(r#"{"ip": [{"cidr": "10.0.0.0/8"}]}"#, r#"{"ip": 10}"#));
}

#[test]
fn or_at_any_level_and_nested() {
    let p = r#"{"detail": {"$or": [{"c-count": [{"numeric": [">", 10]}]}, {"d-count": [{"numeric": ["<", 10]}]}]}}"#;
    assert!(m(p, EC2));
    let p = r#"{"source": ["aws.ec2"], "$or": [{"detail": {"state": ["running"]}}, {"$or": [{"region": ["us-east-1"]}, {"detail": {"c-count": [5]}}]}]}"#;
    assert!(m(p, EC2));
    let p = r#"{"source": ["aws.ec2"], "$or": [{"detail": {"state": ["running"]}}, {"$or": [{"region": ["us-east-1"]}, {"detail": {"c-count": [6]}}]}]}"#;
    assert!(!m(p, EC2));
    let p = r#"{"source": ["aws.s3"], "$or": [{"region": ["us-west-1"]}, {"account": ["111122223333"]}]}"#;
    assert!(!m(p, EC2));
}

#[test]
fn array_consistency() {
    let p = r#"{"a": {"b": ["x"], "c": ["y"]}}"#;
    assert!(m(
        p,
        r#"{"a": [{"b": "x", "c": "y"}, {"b": "z", "c": "z"}]}"#
    ));
    assert!(!m(
        p,
        r#"{"a": [{"b": "x", "c": "z"}, {"b": "z", "c": "y"}]}"#
    ));
    // Leaf arrays inside one element are fine.
    assert!(m(p, r#"{"a": [{"b": ["q", "x"], "c": "y"}]}"#));
    // Separate arrays impose no constraint on each other.
    let p = r#"{"a": {"b": ["x"]}, "d": {"e": ["y"]}}"#;
    assert!(m(
        p,
        r#"{"a": [{"b": "z"}, {"b": "x"}], "d": [{"e": "y"}, {"e": "q"}]}"#
    ));
    // Nested arrays.
    let p = r#"{"r": {"items": {"k": ["Owner"], "v": ["nia"]}}}"#;
    assert!(m(
        p,
        r#"{"r": {"items": [{"k": "Name", "v": "web"}, {"k": "Owner", "v": "nia"}]}}"#
    ));
    assert!(!m(
        p,
        r#"{"r": {"items": [{"k": "Name", "v": "nia"}, {"k": "Owner", "v": "web"}]}}"#
    ));
    assert!(!m(
        p,
        r#"{"r": [{"items": [{"k": "Owner"}]}, {"items": [{"v": "nia"}]}]}"#
    ));
    assert!(m(
        p,
        r#"{"r": [{"items": [{"k": "Owner"}]}, {"items": [{"k": "Owner", "v": "nia"}]}]}"#
    ));
}

#[test]
fn trap_prefix_then_exact_same_length() {
    for order in [[0, 1], [1, 0]] {
        let pats = [r#"{"a": [{"prefix": "ab"}]}"#, r#"{"a": ["abcd"]}"#];
        let mut mm = Matcher::new();
        for i in order {
            mm.add_pattern(i, &Pattern::parse(pats[i]).unwrap())
                .unwrap();
        }
        let mut got = mm.matches_for_event(br#"{"a": "abxy"}"#).unwrap();
        got.sort();
        assert_eq!(got, vec![0]);
        let mut got = mm.matches_for_event(br#"{"a": "abcd"}"#).unwrap();
        got.sort();
        assert_eq!(got, vec![0, 1]);
        assert!(mm
            .matches_for_event(br#"{"a": "xbcd"}"#)
            .unwrap()
            .is_empty());
    }
}

#[test]
fn trap_shared_first_field() {
    let pats = [
        r#"{"a": ["x"], "b": [{"prefix": "f"}]}"#,
        r#"{"a": ["x"], "b": ["foo"]}"#,
        r#"{"a": ["x"], "c": ["z"]}"#,
        r#"{"a": ["x"]}"#,
    ];
    // Every insertion order gives the same answer.
    let orders = [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2]];
    for order in orders {
        let mut mm = Matcher::new();
        for i in order {
            mm.add_pattern(i, &Pattern::parse(pats[i]).unwrap())
                .unwrap();
        }
        let mut got = mm
            .matches_for_event(br#"{"a": "x", "b": "foo", "c": "z"}"#)
            .unwrap();
        got.sort();
        assert_eq!(got, vec![0, 1, 2, 3]);
        let mut got = mm.matches_for_event(br#"{"a": "x", "b": "fa"}"#).unwrap();
        got.sort();
        assert_eq!(got, vec![0, 3]);
    }
}

#[test]
fn names_hold_several_patterns_and_can_be_removed() {
    let mut mm = Matcher::new();
    mm.add_pattern("r", &Pattern::parse(r#"{"a": ["1"]}"#).unwrap())
        .unwrap();
    mm.add_pattern("r", &Pattern::parse(r#"{"b": ["2"]}"#).unwrap())
        .unwrap();
    mm.add_pattern("s", &Pattern::parse(r#"{"a": ["1"], "b": ["2"]}"#).unwrap())
        .unwrap();
    let mut got = mm.matches_for_event(br#"{"a": "1", "b": "2"}"#).unwrap();
    got.sort();
    assert_eq!(got, vec!["r", "s"]);
    assert_eq!(mm.matches_for_event(br#"{"b": "2"}"#).unwrap(), vec!["r"]);
    assert!(mm.remove_pattern(&"r"));
    assert!(!mm.remove_pattern(&"r"));
    assert_eq!(
        mm.matches_for_event(br#"{"a": "1", "b": "2"}"#).unwrap(),
        vec!["s"]
    );
    assert!(mm.matches_for_event(br#"{"b": "2"}"#).unwrap().is_empty());
    mm.add_pattern(
        "t",
        &Pattern::parse(r#"{"c": [{"exists": false}]}"#).unwrap(),
    )
    .unwrap();
    assert_eq!(mm.matches_for_event(br#"{"b": "2"}"#).unwrap(), vec!["t"]);
    assert!(mm.remove_pattern(&"t"));
    assert!(mm.matches_for_event(br#"{"b": "2"}"#).unwrap().is_empty());
    assert_eq!(mm.len(), 1);
}

#[test]
fn bad_events_are_errors() {
    let mut mm = Matcher::new();
    mm.add_pattern(0, &Pattern::parse(r#"{"a": ["1"]}"#).unwrap())
        .unwrap();
    for bad in [
        "",
        "[]",
        "1",
        "{",
        r#"{"a": }"#,
        r#"{"a": "1"} x"#,
        r#"{"a": "\x"}"#,
        r#"{"a": 01}"#,
        r#"{"a": tru}"#,
        "{\"a\": \"\u{1}\"}",
        r#"{"a": "\ud800"}"#,
        r#"{"a": [1,]}"#,
        // Fields no pattern names are skipped by bracket depth, but their strings are
        // still scanned and their brackets must pair up.
        r#"{"b": "x"#,
        r#"{"b": ["\x"]}"#,
        "{\"b\": {\"c\": \"\u{1}\"}}",
        r#"{"b": [1}, "a": "1"}"#,
        r#"{"b": {"c": [1]]}"#,
        r#"{"b": [[1]"#,
        r#"{"b": tru}"#,
        r#"{"b": 01}"#,
    ] {
        assert!(mm.matches_for_event(bad.as_bytes()).is_err(), "{bad:?}");
    }
    // Tokens between the brackets of a skipped object or array are not parsed.
    for lax in [r#"{"b": [1,], "a": "1"}"#, r#"{"b": {"c" 1 2}, "a": "1"}"#] {
        assert_eq!(
            mm.matches_for_event(lax.as_bytes()).unwrap(),
            vec![0],
            "{lax:?}"
        );
        let p = Pattern::parse(r#"{"a": ["1"]}"#).unwrap();
        assert!(
            explain(&p, lax.as_bytes()).is_err(),
            "explain is strict: {lax:?}"
        );
    }
    let deep = format!("{{\"a\": {}1{}}}", "[".repeat(200), "]".repeat(200));
    assert!(mm.matches_for_event(deep.as_bytes()).is_err());
    assert!(mm.matches_for_event(&[b'{', 0xff, b'}']).is_err());
    assert!(mm.matches_for_event(b"{\"a\": \"\xff\"}").is_err());
    assert!(mm
        .matches_for_event(b"{\"b\": \"\xff\", \"a\": \"1\"}")
        .is_err());
    assert!(mm.matches_for_event(b" {\"a\" : \"1\" } \n").unwrap() == vec![0]);
}

#[test]
fn matcher_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Matcher<String>>();
}

#[test]
fn explain_names_field_wanted_and_had() {
    let p = Pattern::parse(
        r#"{"source": ["aws.ec2"], "$or": [{"detail": {"state": ["running", {"prefix": "st"}]}}, {"detail": {"location": [{"exists": true}]}}]}"#,
    )
    .unwrap();
    let text = explain(&p, EC2.as_bytes()).unwrap().to_string();
    assert!(text.starts_with("no match\n"), "{text}");
    assert!(text.contains("$or branch 1 of 2: does not match"), "{text}");
    assert!(
        text.contains(
            r#"detail.state: wanted one of ["running", prefix "st"]; event had "terminated""#
        ),
        "{text}"
    );
    assert!(
        text.contains("detail.location: wanted exists true; event had an object, not a value"),
        "{text}"
    );
    let p = Pattern::parse(r#"{"a": {"b": ["x"], "c": ["y"]}}"#).unwrap();
    let ex = explain(&p, br#"{"a": [{"b": "x"}, {"c": "y"}]}"#).unwrap();
    assert!(!ex.matched && ex.branches[0].array_conflict);
    assert!(ex.to_string().contains("not within the same array element"));
}

#[test]
fn many_sibling_fields_with_shared_heads() {
    // Enough siblings for the hashed lookup; names share their first eight bytes and
    // lengths, and short names overlap each other.
    let mut names: Vec<String> = (0..12).map(|i| format!("abcdefgh{i:02}")).collect();
    names.extend(
        [
            "a", "ab", "ba", "abc", "acb", "abcd", "abce", "abcdefg", "abcdefgh", "é", "aé",
        ]
        .map(String::from),
    );
    for n in [3, names.len()] {
        let mut mm = Matcher::new();
        for name in &names[..n] {
            let p = serde_json::json!({ "d": { name.as_str(): ["v"] } });
            mm.add_pattern(name.clone(), &Pattern::from_value(&p).unwrap())
                .unwrap();
        }
        for name in &names[..n] {
            let ev = serde_json::json!({ "d": { name.as_str(): "v", "abcdefgh99": "v", "abcdefgi": "v" } });
            let got = mm.matches_for_event(ev.to_string().as_bytes()).unwrap();
            assert_eq!(got, vec![name.clone()], "{name}");
        }
    }
}
