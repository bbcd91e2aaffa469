//! JUnit XML for `zkalert test --junit`: one testsuite per test file, one
//! testcase per test group, as CI systems read them.

use super::FileResult;
use quick_xml::escape::escape;
use std::fmt::Write as _;

pub fn render(results: &[FileResult]) -> String {
    let tests: usize = results.iter().map(|r| r.groups.len().max(1)).sum();
    let failures: usize = results
        .iter()
        .map(|r| if r.load_error.is_some() { 1 } else { r.groups.iter().filter(|g| !g.failures.is_empty()).count() })
        .sum();
    let total: f64 = results.iter().map(|r| r.duration.as_secs_f64()).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ =
        writeln!(out, "<testsuites name=\"zkalert\" tests=\"{tests}\" failures=\"{failures}\" time=\"{total:.3}\">");
    for r in results {
        let file = escape(r.path.to_string_lossy().as_ref()).into_owned();
        let n = r.groups.len().max(1);
        let f = if r.load_error.is_some() { 1 } else { r.groups.iter().filter(|g| !g.failures.is_empty()).count() };
        let _ = writeln!(
            out,
            "  <testsuite name=\"{file}\" tests=\"{n}\" failures=\"{f}\" errors=\"0\" time=\"{:.3}\">",
            r.duration.as_secs_f64()
        );
        if let Some(err) = &r.load_error {
            let _ = writeln!(out, "    <testcase name=\"load\" classname=\"{file}\" time=\"0\">");
            let _ = writeln!(out, "      <failure message=\"could not load\">{}</failure>", escape(err.as_str()));
            out.push_str("    </testcase>\n");
        }
        for g in &r.groups {
            let _ = write!(
                out,
                "    <testcase name=\"{}\" classname=\"{file}\" time=\"{:.3}\"",
                escape(g.name.as_str()),
                g.duration.as_secs_f64()
            );
            if g.failures.is_empty() {
                out.push_str("/>\n");
            } else {
                out.push_str(">\n");
                let text = g.failures.join("\n\n");
                let _ = writeln!(
                    out,
                    "      <failure message=\"{} expectation(s) failed\">{}</failure>",
                    g.failures.len(),
                    escape(text.as_str())
                );
                out.push_str("    </testcase>\n");
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}
