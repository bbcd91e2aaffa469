//! `zkalert check`: validate rule files, scripts, runbooks and rule tests,
//! reporting every problem as `path:line:col: message`.

use super::outln;
use crate::config::SourceConfig;
use crate::diag::{Diagnostics, Pos};
use crate::rule::catalogue::catalogue;
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
    let mut rules = 0;
    let mut warnings = Diagnostics::default();
    // The rule files configs name, each counted once (and not again when
    // also given on the command line).
    let mut config_rule_files: Vec<PathBuf> = Vec::new();
    for c in &configs {
        match crate::config::Config::load(c) {
            Ok(cfg) => match crate::rule::find_rule_files(&cfg.rules) {
                Ok(files) => {
                    let same = |a: &PathBuf, b: &PathBuf| {
                        a == b
                            || std::fs::canonicalize(a).ok().is_some_and(|a| std::fs::canonicalize(b).ok() == Some(a))
                    };
                    let files: Vec<PathBuf> = files
                        .into_iter()
                        .filter(|f| !rule_files.iter().chain(&config_rule_files).any(|g| same(f, g)))
                        .collect();
                    match load_rules(&files, LoadOptions::default()) {
                        Ok(set) => {
                            rules += set.rule_count();
                            warnings.extend(set.warnings);
                            // A prometheus source may produce any name.
                            let any_name = cfg.sources.iter().any(|s| matches!(s, SourceConfig::Prometheus(_)));
                            warnings.extend(catalogue().check(&set.metric_reads, any_name));
                        }
                        Err(d) => errors.extend(d),
                    }
                    config_rule_files.extend(files);
                }
                Err(e) => errors.push(c, Pos::new(1, 1), format!("cannot list the config's rules: {e}")),
            },
            Err(d) => errors.extend(d),
        }
    }
    match load_rules(&rule_files, LoadOptions { require_runbooks: true, ..LoadOptions::default() }) {
        Ok(set) => {
            rules += set.rule_count();
            warnings.extend(set.warnings);
            // No config says which sources: a prometheus one may produce any name.
            warnings.extend(catalogue().check(&set.metric_reads, true));
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
        rule_files: rule_files.len() + config_rule_files.len(),
        config_files: configs.len(),
        rules,
        test_files: test_files.len(),
        errors: errors.sorted(),
        warnings: warnings.sorted(),
    }
}

fn is_config_file(path: &std::path::Path) -> bool {
    crate::yaml::read_file(path)
        .ok()
        .and_then(|text| crate::yaml::parse(&text, path).ok())
        .is_some_and(|root| root.get("sources").is_some())
}

/// One diagnostic as `check --json` prints it.
fn diagnostic_json(d: &crate::diag::Diagnostic) -> serde_json::Value {
    serde_json::json!({
        "path": d.path.display().to_string(),
        "line": d.pos.line,
        "column": d.pos.col,
        "message": d.message,
    })
}

/// The report as one JSON object (the shape is in README.md).
pub fn report_json(report: &CheckReport) -> serde_json::Value {
    serde_json::json!({
        "ok": report.errors.is_empty(),
        "rule_files": report.rule_files,
        "rules": report.rules,
        "test_files": report.test_files,
        "config_files": report.config_files,
        "errors": report.errors.items.iter().map(diagnostic_json).collect::<Vec<_>>(),
        "warnings": report.warnings.items.iter().map(diagnostic_json).collect::<Vec<_>>(),
    })
}

/// Runs `check` and prints the report (as JSON with `json`); returns the
/// exit code.
pub fn run(paths: &[PathBuf], json: bool) -> i32 {
    let report = check(paths);
    let code = if report.errors.is_empty() { super::EXIT_OK } else { super::EXIT_FAIL };
    if json {
        outln!("{}", report_json(&report));
        return code;
    }
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
    } else {
        outln!("FAILED: {} problem(s)", report.errors.len());
    }
    code
}
