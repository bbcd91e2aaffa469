//! Input from outside never panics: arbitrary text through every parser
//! (YAML tree, rule files, test files with notification tests, configs
//! with routing, series notation, recorded samples).

use proptest::prelude::*;
use std::path::Path;
use zkalert::testing::notation::{parse_series, parse_values};

/// Text biased towards the syntax these parsers care about.
fn yamlish() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "groups:",
        "- name: g",
        "rules:",
        "  ",
        "- alert: A",
        "expr: ",
        "up == 0",
        "for: 5m",
        "tiers:",
        "{ P1: \"> 1\" }",
        "&a",
        "*a",
        "|",
        "\n",
        ":",
        "\"",
        "'",
        "[",
        "]",
        "{",
        "}",
        "#",
        "\t",
        "é",
        "---",
        "x",
        "1e9",
        "-",
        "?",
        "tests:",
        "input_series:",
        "values: '1+1x3'",
        "rule_files: [a]",
        "exp_alerts:",
        "sources:",
        "- {type: zookeeper, cluster: c, nodes: ['a:1']}",
        "routing:",
        "tiers:",
        "P0: {channels: [console], group_wait: 0s}",
        "digest: '0 9 * * *'",
        "routes:",
        "- matchers: '{a=~\"b\"}'",
        "inhibit_rules: [defaults]",
        "maintenance:",
        "schedule: '0 2 * * 6'",
        "time_zone: Asia/Shanghai",
        "notification_test:",
        "config: c.yaml",
        "expect:",
        "- at: 1m",
        "channels: [console]",
        "firing: [A]",
        "acks:",
        "silences:",
    ]);
    prop::collection::vec(atoms, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn yaml_tree(text in yamlish()) {
        let _ = zkalert::yaml::parse(&text, Path::new("fuzz.yaml"));
    }

    #[test]
    fn yaml_tree_any_text(text in "\\PC{0,200}") {
        let _ = zkalert::yaml::parse(&text, Path::new("fuzz.yaml"));
    }

    #[test]
    fn series_notation(text in "[a-z_{}=\",' 0-9x+\\-._]{0,60}") {
        let _ = parse_series(&text);
        let _ = parse_values(&text, zkalert::testing::notation::MAX_VALUES);
    }

    #[test]
    fn values_any_text(text in "\\PC{0,80}") {
        let _ = parse_values(&text, zkalert::testing::notation::MAX_VALUES);
        let _ = parse_series(&text);
    }

    #[test]
    fn recorded_samples(text in "\\PC{0,200}") {
        let _ = zkalert::replay::read_samples(Path::new("in"), &text);
        let json = format!("{{{text}");
        let _ = zkalert::replay::read_samples(Path::new("in"), &json);
    }

    #[test]
    fn durations(text in "[0-9a-z]{0,12}") {
        let _ = zkalert::duration::parse_duration(&text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Whole rule and test files from arbitrary YAML-ish text: errors, never panics.
    #[test]
    fn rule_and_test_files(text in yamlish()) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.yaml");
        std::fs::write(&p, &text).unwrap();
        let _ = zkalert::rule::load_rules(std::slice::from_ref(&p), zkalert::rule::LoadOptions::default());
        let _ = zkalert::testing::parse_test_file(&p);
        let _ = zkalert::config::Config::parse(&text, &p);
    }
}
