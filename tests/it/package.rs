//! The Debian package, for real: `packaging/deb.sh` builds it around the
//! binary under test, `dpkg -i` installs it on this machine, then what a
//! team checks after installing ZooKeeper's: the unit passes
//! `systemd-analyze verify`, `zkalert --version` names the version and
//! commit, `man zkalert` opens, the completions and the rule pack are in
//! place and the shipped config checks; `dpkg -r` removes it and `dpkg -P`
//! purges its config. Needs root (as CI runs it); refuses to touch a
//! zkalert package that was installed before it.

use crate::support::zkalert::BIN;
use std::path::Path;
use std::process::{Command, Output};

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{program} {args:?} failed ({}):\n{text}", out.status);
    text
}

fn installed() -> bool {
    run("dpkg-query", &["-W", "-f=${Status}", "zkalert"]).stdout.starts_with(b"install ok installed")
}

/// Purges the package if the test installed it and stopped half-way.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = run("dpkg", &["--purge", "zkalert"]);
        }
    }
}

#[test]
fn the_deb_installs_a_service_with_its_config_completions_and_man_page_and_removes_cleanly() {
    assert!(!installed(), "a zkalert package is installed on this machine: this test would replace it");
    let out = tempfile::tempdir().expect("temp dir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = ok(
        &root.join("packaging/deb.sh").to_string_lossy(),
        &["--binary", BIN, "--out", &out.path().to_string_lossy()],
    );
    let deb = built.lines().last().expect("deb.sh names the package").trim().to_string();
    let contents = ok("dpkg-deb", &["--contents", &deb]);
    for path in [
        "./usr/bin/zkalert",
        "./etc/zkalert/zkalert.yaml",
        "./lib/systemd/system/zkalert.service",
        "./usr/share/zkalert/rules/zookeeper/logs.yaml",
        "./usr/share/zkalert/rules/runbooks/zookeeper/disk-full.md",
        "./usr/share/bash-completion/completions/zkalert",
        "./usr/share/zsh/vendor-completions/_zkalert",
        "./usr/share/fish/vendor_completions.d/zkalert.fish",
        "./usr/share/man/man1/zkalert.1.gz",
    ] {
        assert!(contents.contains(path), "{path} missing from the package:\n{contents}");
    }
    assert_eq!(ok("dpkg-deb", &["--field", &deb, "Package"]).trim(), "zkalert");
    assert!(ok("dpkg-deb", &["--info", &deb]).contains("conffiles"), "the config is a conffile");

    let _guard = Installed;
    ok("dpkg", &["-i", &deb]);
    assert!(installed());
    // Its own user, and an API token only it (and root) may read.
    assert!(ok("getent", &["passwd", "zkalert"]).starts_with("zkalert:"));
    let token = std::fs::metadata("/etc/zkalert/api-token").expect("an API token");
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&token.permissions()) & 0o777, 0o640);

    let verify = run("systemd-analyze", &["verify", "/lib/systemd/system/zkalert.service"]);
    let said = String::from_utf8_lossy(&verify.stderr).to_string();
    assert!(verify.status.success(), "systemd-analyze verify: {said}");
    assert!(!said.contains("zkalert.service:"), "warnings about the unit: {said}");
    let unit = std::fs::read_to_string("/lib/systemd/system/zkalert.service").unwrap();
    for line in [
        "User=zkalert",
        "StateDirectory=zkalert",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing from the unit");
    }

    let version = ok("/usr/bin/zkalert", &["--version"]);
    let commit = run("git", &["-C", &root.to_string_lossy(), "rev-parse", "--short=12", "HEAD"]);
    let commit = String::from_utf8_lossy(&commit.stdout).trim().to_string();
    assert_eq!(version.trim(), format!("zkalert {} ({commit})", env!("CARGO_PKG_VERSION")));
    let man = Command::new("man").arg("zkalert").env("MANPAGER", "cat").env("MANWIDTH", "100").output().unwrap();
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(man.status.success() && page.contains("zkalert") && page.contains("completions"), "man zkalert:\n{page}");
    let bash = std::fs::read_to_string("/usr/share/bash-completion/completions/zkalert").unwrap();
    assert!(bash.contains("complete") && bash.contains("silence"), "{bash}");
    // The shipped config checks against the installed pack.
    assert!(ok("/usr/bin/zkalert", &["check", "/etc/zkalert/zkalert.yaml"]).contains("OK:"));

    ok("dpkg", &["-r", "zkalert"]);
    assert!(!Path::new("/usr/bin/zkalert").exists() && !Path::new("/lib/systemd/system/zkalert.service").exists());
    assert!(Path::new("/etc/zkalert/zkalert.yaml").exists(), "a removed package keeps its conffile");
    ok("dpkg", &["-P", "zkalert"]);
    assert!(!Path::new("/etc/zkalert").exists(), "a purge takes the config and token");
    assert!(!installed());
}
