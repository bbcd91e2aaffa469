#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need
# (Debian packages) when missing, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
# promtool, and tests/it/metrics.rs runs a real Prometheus scraping /metrics.
{ command -v promtool >/dev/null 2>&1 && [ -x /usr/bin/prometheus ]; } || need_pkgs+=(prometheus)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
# tests/it/alertmanager.rs drives zkalert with Debian's amtool.
command -v amtool >/dev/null 2>&1 || need_pkgs+=(prometheus-alertmanager)
# tests/it/ensemble.rs runs real ZooKeeper ensembles: Debian's zookeeper 3.8
# (jars in /usr/share/java; it pulls in the servlet API and the SLF4J/log4j
# jars the harness puts on the classpath) and a JRE to run them.
[ -f /usr/share/java/zookeeper.jar ] || need_pkgs+=(zookeeper)
command -v java >/dev/null 2>&1 || need_pkgs+=(default-jre-headless)
# tests/it/email.rs delivers to a real SMTP server: aiosmtpd, run by Debian's python3.
/usr/bin/python3 -c "import aiosmtpd" >/dev/null 2>&1 || need_pkgs+=(python3-aiosmtpd)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
# tests/it/runbooks.rs runs the runbooks' four-letter-word checks as written.
command -v nc >/dev/null 2>&1 || need_pkgs+=(netcat-openbsd)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
# tests/it/http_sources.rs scrapes a real node exporter with the Prometheus source.
[ -x /usr/bin/prometheus-node-exporter ] || need_pkgs+=(prometheus-node-exporter)
# tests/it/fd_limit.rs runs zkalert under prlimit; tests/it/durability.rs mounts a
# small tmpfs as a full disk (both util-linux; the tests run as root).
command -v prlimit >/dev/null 2>&1 && command -v mount >/dev/null 2>&1 || need_pkgs+=(util-linux mount)
# tests/it/console.rs drives the web console in Debian's chromium with
# playwright-core (npm, pinned by tests/browser/package-lock.json).
[ -x /usr/bin/chromium ] || need_pkgs+=(chromium)
command -v node >/dev/null 2>&1 || need_pkgs+=(nodejs)
# tests/it/package.rs builds the .deb, installs it with dpkg, checks the unit
# with systemd-analyze and the page with man.
command -v systemd-analyze >/dev/null 2>&1 || need_pkgs+=(systemd)
command -v man >/dev/null 2>&1 || need_pkgs+=(man-db)
command -v adduser >/dev/null 2>&1 || need_pkgs+=(adduser)
command -v npm >/dev/null 2>&1 || need_pkgs+=(npm)
if ((${#need_pkgs[@]})); then
  echo "test.sh: installing ${need_pkgs[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
[ -d tests/browser/node_modules/playwright-core ] || (cd tests/browser && npm ci --no-audit --no-fund)

cargo build --all-targets
# Unit, integration, property and fuzz-style tests. One test at a time: the
# real-ensemble tests each run three JVMs, and on a 2-core machine two of
# them at once starve the zkalert under test (a node-down once fired late).
cargo test --all-targets -- --test-threads=1
# The shipped rules validate and their tests pass, as CI users run them.
./target/debug/zkalert check rules/ examples/
./target/debug/zkalert test rules/ examples/
# Compatibility with Prometheus: the same generated rules and promtool-format
# tests must pass under both promtool and zkalert.
python3 benches/side_by_side.py --sizes 5x20x10,20x100x30 --zkalert target/debug/zkalert --repeat 1
