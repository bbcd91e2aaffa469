//! `zkalert test`: run rule unit tests, print expected vs got, optionally
//! write JUnit XML; exit 1 if anything failed.

use super::outln;
use crate::rule::find_test_files;
use crate::testing::{FileResult, junit, run_test_file};
use std::path::{Path, PathBuf};

pub fn run(paths: &[PathBuf], junit_out: Option<&Path>) -> anyhow::Result<i32> {
    let files = find_test_files(paths)?;
    if files.is_empty() {
        anyhow::bail!(
            "no test files found in {}",
            paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    let results: Vec<FileResult> = files.iter().map(|f| run_test_file(f)).collect();
    let (mut passed, mut failed) = (0, 0);
    for r in &results {
        if let Some(err) = &r.load_error {
            failed += 1;
            outln!("FAIL {}\n{err}", r.path.display());
            continue;
        }
        for g in &r.groups {
            if g.failures.is_empty() {
                passed += 1;
                outln!("ok   {}: {}", r.path.display(), g.name);
            } else {
                failed += 1;
                outln!("FAIL {}: {}", r.path.display(), g.name);
                for f in &g.failures {
                    for line in f.lines() {
                        outln!("    {line}");
                    }
                }
            }
        }
    }
    if let Some(path) = junit_out {
        std::fs::write(path, junit::render(&results))
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    outln!("zkalert test: {passed} passed, {failed} failed");
    Ok(if failed == 0 { super::EXIT_OK } else { super::EXIT_FAIL })
}
