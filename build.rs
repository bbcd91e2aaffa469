//! Embeds the shipped rule pack (`rules/`) in the binary, so `zkalert run`
//! without a config watches 127.0.0.1:2181 with the full pack at once.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
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
