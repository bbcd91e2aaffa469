//! `zkalert check`: validate rule files, scripts, runbooks and rule tests,
//! reporting every problem as `path:line:col: message`.

use super::outln;
use crate::diag::{Diagnostics, Pos};
use crate::rule::{LoadOptions, find_rule_files, find_test_files, is_test_file_name, load_rules};
use crate::testing::parse_test_file;
use std::path::PathBuf;

/// What `check` found.
pub struct CheckReport {
    pub rule_files: usize,
    pub config_files: usize,
    pub rules: usize,
    pub test_files: usize,
    pub errors: Diagnostics,
    pub warnings: Diagnostics,
}

pub fn check(paths: &[PathBuf]) -> CheckReport {
    let mut errors = Diagnostics::default();
    let mut rule_files = Vec::new();
    let mut test_files = Vec::new();
    for p in paths {
        if !p.exists() {
            errors.push(p, Pos::new(1, 1), "no such file or directory");
            continue;
        }
        let one = std::slice::from_ref(p);
        let found = if is_test_file_name(p) {
            find_test_files(one).map(|t| test_files.extend(t))
        } else {
            find_rule_files(one)
                .map(|r| rule_files.extend(r))
                .and_then(|()| if p.is_dir() { find_test_files(one).map(|t| test_files.extend(t)) } else { Ok(()) })
        };
        if let Err(e) = found {
            errors.push(p, Pos::new(1, 1), format!("cannot list: {e}"));
        }
    }
    // A YAML file with top-level `sources` is a zkalert config: validate it
    // as one (and the rules it names), not as a rule file.
    let (configs, rule_files): (Vec<PathBuf>, Vec<PathBuf>) = rule_files.into_iter().partition(|f| is_config_file(f));
    for c in &configs {
        match crate::config::Config::load(c) {
            Ok(cfg) => {
                let files = crate::rule::find_rule_files(&cfg.rules).unwrap_or_default();
                if let Err(d) = load_rules(&files, LoadOptions::default()) {
                    errors.extend(d);
                }
            }
            Err(d) => errors.extend(d),
        }
    }
    let mut rules = 0;
    let mut warnings = Diagnostics::default();
    match load_rules(&rule_files, LoadOptions { require_runbooks: true, ..LoadOptions::default() }) {
        Ok(set) => {
            rules = set.rule_count();
            warnings = set.warnings;
        }
        Err(d) => errors.extend(d),
    }
    for t in &test_files {
        match parse_test_file(t) {
            Ok(file) => {
                // The rules a test uses must load too (they may live elsewhere).
                let outside: Vec<PathBuf> =
                    file.rule_files.iter().filter(|f| !rule_files.contains(f)).cloned().collect();
                if let Err(d) = load_rules(&outside, LoadOptions::default()) {
                    errors.extend(d);
                }
            }
            Err(d) => errors.extend(d),
        }
    }
    CheckReport {
        rule_files: rule_files.len(),
        config_files: configs.len(),
        rules,
        test_files: test_files.len(),
        errors: errors.sorted(),
        warnings,
    }
}

fn is_config_file(path: &std::path::Path) -> bool {
    crate::yaml::read_file(path)
        .ok()
        .and_then(|text| crate::yaml::parse(&text, path).ok())
        .is_some_and(|root| root.get("sources").is_some())
}

/// Runs `check` and prints the report; returns the exit code.
pub fn run(paths: &[PathBuf]) -> i32 {
    let report = check(paths);
    for w in &report.warnings.items {
        outln!("{w} (warning)");
    }
    for e in &report.errors.items {
        outln!("{e}");
    }
    if report.errors.is_empty() {
        outln!(
            "OK: {} rule file(s), {} rule(s), {} test file(s), {} config file(s)",
            report.rule_files,
            report.rules,
            report.test_files,
            report.config_files
        );
        super::EXIT_OK
    } else {
        outln!("FAILED: {} problem(s)", report.errors.len());
        super::EXIT_FAIL
    }
}
