use super::*;
use proptest::prelude::*;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_millis(secs * 1000)
}

fn iso(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0).unwrap().to_rfc3339()
}

fn post(body: &str, now: i64) -> Checked {
    check_post(body.as_bytes(), &IntakePolicy::default(), at(now)).unwrap()
}

/// What Prometheus 2.42 posts (notifier.go: labels, annotations, startsAt,
/// endsAt, generatorURL).
fn prometheus_alert(name: &str, severity: &str, starts: i64, ends: i64) -> String {
    format!(
        r#"{{"labels":{{"alertname":"{name}","job":"node","instance":"h1:9100","severity":"{severity}"}},"annotations":{{"summary":"{name} on h1","runbook_url":"https://runbooks.example/{name}"}},"startsAt":"{}","endsAt":"{}","generatorURL":"http://prom:9090/graph?g0.expr=up+%3D%3D+0"}}"#,
        iso(starts),
        iso(ends)
    )
}

#[test]
fn a_prometheus_post_becomes_firing_alerts_at_their_mapped_tiers() {
    let body = format!(
        "[{},{},{},{},{}]",
        prometheus_alert("A", "critical", 90, 160),
        prometheus_alert("B", "warning", 90, 160),
        prometheus_alert("C", "info", 90, 160),
        prometheus_alert("D", "page", 90, 160),
        prometheus_alert("E", "P0", 90, 160),
    );
    let checked = post(&body, 100);
    assert!(checked.refused.is_empty() && checked.defaulted.is_empty(), "{checked:?}");
    let tiers: Vec<(String, Severity)> =
        checked.batch.alerts.iter().map(|a| (a.alert.name().to_string(), a.alert.severity)).collect();
    assert_eq!(
        tiers,
        [
            ("A".into(), Severity::P1),
            ("B".into(), Severity::P2),
            ("C".into(), Severity::P3),
            ("D".into(), Severity::P0),
            ("E".into(), Severity::P0)
        ]
    );
    let a = &checked.batch.alerts[0];
    assert_eq!(a.alert.state, AlertState::Firing);
    assert_eq!((a.alert.active_at, a.alert.fired_at, a.ends_at), (at(90), Some(at(100)), at(160)));
    assert_eq!(a.alert.labels.get("severity"), Some("critical"), "the posted severity stays as it is");
    assert_eq!(a.alert.runbook.as_deref(), Some("https://runbooks.example/A"));
    let ann: BTreeMap<&str, &str> = a.alert.annotations.iter().collect();
    assert_eq!(ann["summary"], "A on h1");
    assert_eq!(ann["generator_url"], "http://prom:9090/graph?g0.expr=up+%3D%3D+0");
    assert!(!ann.contains_key(RUNBOOK_MISSING));
}

#[test]
fn severities_not_mapped_take_the_default_tier_and_say_so() {
    let body = r#"[{"labels":{"alertname":"X","severity":"sev9"}},{"labels":{"alertname":"Y"}},{"labels":{"alertname":"Z","severity":"CRITICAL"}}]"#;
    let checked = post(body, 100);
    let tiers: Vec<Severity> = checked.batch.alerts.iter().map(|a| a.alert.severity).collect();
    assert_eq!(tiers, [Severity::P2, Severity::P2, Severity::P1], "mapping ignores case");
    assert_eq!(
        checked.defaulted,
        [
            "alerts[0]: severity \"sev9\" is not mapped: taken as P2",
            "alerts[1]: severity (none) is not mapped: taken as P2"
        ]
    );
    assert_eq!(checked.batch.alerts[1].alert.labels.get("severity"), Some("P2"), "no severity: the tier");
}

#[test]
fn without_end_an_alert_resolves_after_the_resolve_timeout_and_without_runbook_it_is_marked() {
    let checked = post(r#"[{"labels":{"alertname":"X"}}]"#, 100);
    let a = &checked.batch.alerts[0];
    assert_eq!((a.alert.active_at, a.ends_at), (at(100), at(400)));
    assert_eq!(a.alert.runbook.as_deref(), Some(DEFAULT_RUNBOOK));
    assert_eq!(a.alert.annotations.get(RUNBOOK_MISSING), Some("true"));
    let accept = IntakePolicy { missing_runbook: MissingRunbook::Accept, ..IntakePolicy::default() };
    let checked = check_post(br#"[{"labels":{"alertname":"X"},"annotations":{"runbook":"zk/x"}}]"#, &accept, at(0));
    assert_eq!(checked.unwrap().batch.alerts[0].alert.runbook.as_deref(), Some("zk/x"), "`runbook` works too");
    let checked = check_post(br#"[{"labels":{"alertname":"X"}}]"#, &accept, at(0)).unwrap();
    assert_eq!(checked.batch.alerts[0].alert.runbook, None);
    // Go's zero time is "not set"; a start in the future is now.
    let checked = post(
        r#"[{"labels":{"alertname":"X"},"startsAt":"0001-01-01T00:00:00Z","endsAt":"0001-01-01T00:00:00Z"},{"labels":{"alertname":"Y"},"startsAt":"2999-01-01T00:00:00Z"}]"#,
        100,
    );
    let times: Vec<(Timestamp, Timestamp)> =
        checked.batch.alerts.iter().map(|a| (a.alert.active_at, a.ends_at)).collect();
    assert_eq!(times, [(at(100), at(400)), (at(100), at(400))]);
}

#[test]
fn bad_alerts_are_refused_by_index_and_field_and_the_others_taken() {
    let body = r#"[
        {"labels":{"alertname":"ok"}},
        {"labels":{}},
        {"annotations":{"a":"b"}},
        {"labels":{"alert-name":"x"}},
        {"labels":{"alertname":"x"},"startsAt":"yesterday"},
        {"labels":{"alertname":"x"},"startsAt":"2026-01-02T00:00:00Z","endsAt":"2026-01-01T00:00:00Z"},
        {"labels":{"alertname":1}},
        "not an alert",
        {"labels":{"alertname":"ok2"}}
    ]"#;
    let checked = post(body, 100);
    let names: Vec<&str> = checked.batch.alerts.iter().map(|a| a.alert.name()).collect();
    assert_eq!(names, ["ok", "ok2"]);
    let refused: Vec<&str> = checked.refused.iter().map(String::as_str).collect();
    assert_eq!(refused.len(), 7, "{refused:#?}");
    for (i, want) in [
        (0, "alerts[1].labels: at least one label is needed"),
        (1, "alerts[2].labels: at least one label is needed"),
        (2, "alerts[3].labels: \"alert-name\" is not a valid label name"),
        (3, "alerts[4].startsAt: \"yesterday\" is not an RFC 3339 time"),
        (4, "alerts[5].endsAt: before startsAt"),
        (5, "alerts[6]: invalid type: integer `1`, expected a string"),
        (6, "alerts[7]: invalid type: string \"not an alert\""),
    ] {
        assert!(refused[i].starts_with(want), "{}: {want}", refused[i]);
    }
}

#[test]
fn a_body_that_is_not_an_array_or_too_big_is_refused_whole() {
    let policy = IntakePolicy::default();
    for body in [&b"{}"[..], b"", b"[", b"\xff\xfe", b"[{\"labels\":{\"a\":\"b\"}}] trailing"] {
        assert!(matches!(check_post(body, &policy, at(0)), Err(IntakeError::Json(_))), "{body:?}");
    }
    let many = format!("[{}]", vec!["{}"; MAX_ALERTS_PER_POST + 1].join(","));
    assert_eq!(check_post(many.as_bytes(), &policy, at(0)), Err(IntakeError::TooMany));
    // Deep nesting is skipped without recursion and refused as that alert.
    for deep in [
        format!("[{}{}]", "[".repeat(100_000), "]".repeat(100_000)),
        format!(r#"[{{"labels":{{"a":"b"}},"x":{}{}}}]"#, "[".repeat(100_000), "]".repeat(100_000)),
    ] {
        let checked = check_post(deep.as_bytes(), &policy, at(0)).unwrap();
        assert_eq!(checked.refused.len() + checked.batch.alerts.len(), 1, "{:?}", checked.refused);
    }
    let long = format!(r#"[{{"labels":{{"alertname":"{}"}}}}]"#, "x".repeat(MAX_LABEL_VALUE + 1));
    assert_eq!(check_post(long.as_bytes(), &policy, at(0)).unwrap().refused.len(), 1);
    let wide: Vec<String> = (0..=MAX_PAIRS).map(|i| format!("\"l{i}\":\"v\"")).collect();
    let wide = format!(r#"[{{"labels":{{{}}}}}]"#, wide.join(","));
    assert_eq!(check_post(wide.as_bytes(), &policy, at(0)).unwrap().refused.len(), 1);
}

#[test]
fn ten_thousand_alerts_in_one_post_are_all_taken() {
    let alerts: Vec<String> = (0..10_000).map(|i| prometheus_alert(&format!("A{i}"), "warning", 0, 600)).collect();
    let body = format!("[{}]", alerts.join(","));
    let checked = post(&body, 10);
    assert_eq!((checked.batch.alerts.len(), checked.refused.len()), (10_000, 0));
    let mut held = ExternalAlerts::default();
    assert!(held.receive(checked.batch, at(10)));
    assert_eq!(held.firing_count(), 10_000);
}

#[test]
fn held_alerts_fire_refresh_and_resolve_by_end_or_timeout() {
    let mut held = ExternalAlerts::default();
    let policy = IntakePolicy::default();
    let batch = |body: &str, now: i64| check_post(body.as_bytes(), &policy, at(now)).unwrap().batch;
    let x = |ends: i64| format!(r#"[{{"labels":{{"alertname":"X","severity":"warning"}},"endsAt":"{}"}}]"#, iso(ends));
    assert!(held.receive(batch(&x(100), 0), at(0)), "a new alert is a change");
    assert!(!held.receive(batch(&x(160), 60), at(60)), "a refresh is not");
    let firing: Vec<&Alert> = held.alerts().collect();
    assert_eq!((firing[0].active_at, firing[0].fired_at), (at(0), Some(at(0))), "a refresh keeps its times");
    assert!(!held.expire(at(159)));
    assert!(held.expire(at(160)), "the end came");
    assert_eq!(held.alerts().next().unwrap().state, AlertState::Resolved);
    assert_eq!(held.firing_count(), 0);
    // Posted again after it resolved: a new firing.
    assert!(held.receive(batch(&x(400), 200), at(200)));
    assert_eq!(held.alerts().next().unwrap().active_at, at(200));
    // Resolved by a post whose endsAt has passed (Prometheus' resolution).
    assert!(held.receive(batch(&x(210), 210), at(210)));
    assert_eq!(held.firing_count(), 0);
    // Forgotten after the retention.
    held.expire(at(210) + crate::rule::tracker::RESOLVED_RETENTION);
    assert_eq!(held.alerts().count(), 0);
    // A tier change is a change; a resolution of an unknown alert is not.
    assert!(held.receive(batch(r#"[{"labels":{"alertname":"Y","severity":"info"}}]"#, 300), at(300)));
    assert!(held.receive(batch(r#"[{"labels":{"alertname":"Y","severity":"critical"}}]"#, 301), at(301)));
    assert_eq!(held.alerts().next().unwrap().severity, Severity::P1);
    assert!(!held.receive(batch(&x(5), 302), at(302)));
    // No end given: the resolve timeout (5m) from the last post.
    assert!(!held.expire(at(301 + 299)));
    assert!(held.expire(at(301 + 300)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn any_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = check_post(&body, &IntakePolicy::default(), at(0));
    }

    #[test]
    fn any_json_alert_shape_never_panics(
        labels in proptest::collection::btree_map("[a-zA-Z_-]{0,8}", "\\PC{0,16}", 0..5),
        starts in proptest::option::of("\\PC{0,30}"),
        ends in proptest::option::of(0i64..4_000_000_000),
    ) {
        let alert = serde_json::json!({
            "labels": labels,
            "startsAt": starts,
            "endsAt": ends.map(iso),
        });
        let body = serde_json::to_vec(&vec![alert]).unwrap();
        let checked = check_post(&body, &IntakePolicy::default(), at(1_000)).unwrap();
        prop_assert_eq!(checked.batch.alerts.len() + checked.refused.len(), 1);
    }
}

#[test]
fn escaped_strings_are_read_as_the_text_they_stand_for() {
    // Strings without escapes are borrowed from the post; these are not.
    let body = r#"[{"labels":{"alertname":"Quote\"d","path":"C:\\tmp","city":"Z\u00fcrich"},"annotations":{"summary":"line\none"},"startsAt":"2026-01-01T00:00:00\u005a"}]"#;
    let checked = post(body, 1_800_000_000);
    assert!(checked.refused.is_empty(), "{:?}", checked.refused);
    let alert = &checked.batch.alerts[0].alert;
    assert_eq!(alert.labels.get("alertname"), Some("Quote\"d"));
    assert_eq!(alert.labels.get("path"), Some("C:\\tmp"));
    assert_eq!(alert.labels.get("city"), Some("Zürich"));
    assert_eq!(alert.annotation("summary"), Some("line\none"));
    assert_eq!(alert.active_at, Timestamp::from_millis(1_767_225_600_000));
}

#[test]
fn a_name_posted_twice_counts_with_its_last_value_as_in_a_json_map() {
    let body = r#"[{"labels":{"alertname":"A","severity":"info","severity":"critical"},
                    "annotations":{"summary":"first","runbook_url":"http://r","summary":"last"}}]"#;
    let checked = post(body, 1_800_000_000);
    assert!(checked.refused.is_empty() && checked.defaulted.is_empty(), "{checked:?}");
    let alert = &checked.batch.alerts[0].alert;
    assert_eq!((alert.severity, alert.labels.get("severity")), (Severity::P1, Some("critical")));
    assert_eq!(alert.labels.len(), 2);
    let annotations: Vec<(&str, &str)> = alert.annotations.iter().collect();
    assert_eq!(annotations, [("summary", "last"), ("runbook_url", "http://r")]);
}
