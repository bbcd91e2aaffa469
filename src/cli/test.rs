//! `zkalert test`: run rule unit tests, print expected vs got, optionally
//! write JUnit XML; exit 1 if anything failed.

use super::outln;
use crate::rule::find_test_files;
use crate::testing::{FileResult, junit, run_test_file};
use std::path::{Path, PathBuf};

pub fn run(paths: &[PathBuf], junit_out: Option<&Path>, json: bool) -> anyhow::Result<i32> {
    let files = find_test_files(paths)?;
    if files.is_empty() {
        anyhow::bail!(
            "no test files found in {}",
            paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    let results: Vec<FileResult> = files.iter().map(|f| run_test_file(f)).collect();
    if let Some(path) = junit_out {
        std::fs::write(path, junit::render(&results))
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    let (passed, failed) = counts(&results);
    if json {
        outln!("{}", results_json(&results));
    } else {
        print_results(&results);
        outln!("zkalert test: {passed} passed, {failed} failed");
    }
    Ok(if failed == 0 { super::EXIT_OK } else { super::EXIT_FAIL })
}

/// (passed, failed) groups; a file that does not load counts as one failure.
fn counts(results: &[FileResult]) -> (usize, usize) {
    let (mut passed, mut failed) = (0, 0);
    for r in results {
        if r.load_error.is_some() {
            failed += 1;
            continue;
        }
        for g in &r.groups {
            if g.failures.is_empty() {
                passed += 1;
            } else {
                failed += 1;
            }
        }
    }
    (passed, failed)
}

/// The results as one JSON object (the shape is in README.md).
pub fn results_json(results: &[FileResult]) -> serde_json::Value {
    let (passed, failed) = counts(results);
    let files: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            let groups: Vec<serde_json::Value> = r
                .groups
                .iter()
                .map(|g| serde_json::json!({"name": g.name, "ok": g.failures.is_empty(), "failures": g.failures}))
                .collect();
            serde_json::json!({
                "path": r.path.display().to_string(),
                "ok": r.passed(),
                "load_error": r.load_error,
                "groups": groups,
            })
        })
        .collect();
    serde_json::json!({"ok": failed == 0, "passed": passed, "failed": failed, "files": files})
}

fn print_results(results: &[FileResult]) {
    for r in results {
        if let Some(err) = &r.load_error {
            outln!("FAIL {}\n{err}", r.path.display());
            continue;
        }
        for g in &r.groups {
            if g.failures.is_empty() {
                outln!("ok   {}: {}", r.path.display(), g.name);
            } else {
                outln!("FAIL {}: {}", r.path.display(), g.name);
                for f in &g.failures {
                    for line in f.lines() {
                        outln!("    {line}");
                    }
                }
            }
        }
    }
}
