//! Embeds the shipped rule pack (`rules/`) in the binary, so `zkalert run`
//! without a config watches 127.0.0.1:2181 with the full pack at once; and
//! names the commit built (`ZKALERT_COMMIT`, for `zkalert --version`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    commit();
    println!("cargo:rerun-if-changed=rules");
    // The manifest dir of this build, read when the script runs: `env!`
    // would bake in wherever the script was first compiled (a cached
    // script reused from another checkout then embedded nothing).
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let root = Path::new(&manifest).join("rules");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    if !files.iter().any(|f| f.extension().is_some_and(|e| e == "yaml")) {
        panic!("no rule files under {}: the built-in pack would be empty", root.display());
    }
    let mut out = String::from(
        "/// The shipped `rules/` tree: (relative path, contents).\npub static FILES: &[(&str, &str)] = &[\n",
    );
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap_or(f).to_string_lossy().replace('\\', "/");
        let _ = writeln!(out, "    ({rel:?}, include_str!({:?})),", f.display().to_string());
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into())).join("embedded_rules.rs");
    if let Err(e) = std::fs::write(&dest, out) {
        panic!("cannot write {}: {e}", dest.display());
    }
}

/// `ZKALERT_COMMIT`: the environment's (a package build from a tarball can
/// set it), else git's short hash of HEAD, else "unknown commit". Rebuilt
/// when HEAD moves.
fn commit() {
    println!("cargo:rerun-if-env-changed=ZKALERT_COMMIT");
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git").args(args).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !text.is_empty()).then_some(text)
    };
    let commit = std::env::var("ZKALERT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown commit".into());
    println!("cargo:rustc-env=ZKALERT_COMMIT={commit}");
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        let dir = PathBuf::from(dir);
        let branch = git(&["symbolic-ref", "-q", "HEAD"]);
        // Only files that exist: a missing one would rerun every build.
        for f in [Some("HEAD".to_string()), branch, Some("packed-refs".into())].into_iter().flatten() {
            let path = dir.join(f);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        println!("cargo:rerun-if-changed={}", p.display());
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml" || x == "rhai" || x == "md") {
            out.push(p);
        }
    }
}
