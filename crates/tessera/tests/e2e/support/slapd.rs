//! Private `slapd` instances for the end-to-end tests, started with `start-ldap.sh` (from
//! `TESSERA_TEST_SCRIPTS`, by default the repository's `scripts/`) in a temporary directory and
//! stopped when dropped. When slapd cannot be started the test prints why and is skipped,
//! unless `TESSERA_TEST_REQUIRE_SERVICES=1`.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use super::toml_string;

pub struct Slapd {
    dir: PathBuf,
    env: HashMap<String, String>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn scripts_dir() -> PathBuf {
    std::env::var_os("TESSERA_TEST_SCRIPTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts"))
}

fn skip(test: &str, why: &str) -> Option<Slapd> {
    if std::env::var("TESSERA_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{test}: slapd is required (TESSERA_TEST_REQUIRE_SERVICES=1) but {why}");
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIP {test}: {why} (set TESSERA_TEST_REQUIRE_SERVICES=1 to make this fatal)"
    );
    None
}

impl Slapd {
    /// A private slapd; `extra_ldif` adds entries when the directory is seeded.
    pub fn start(test: &str, extra_ldif: Option<&str>) -> Option<Slapd> {
        let script = scripts_dir().join("start-ldap.sh");
        if !script.is_file() {
            return skip(test, &format!("{} not found", script.display()));
        }
        let base = std::env::var_os("TESSERA_TEST_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!(
            "e2e-slapd-{}-{}-{test}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("slapd dir");
        let mut cmd = Command::new("bash");
        cmd.arg(&script).arg(dir.join("slapd"));
        if let Some(ldif) = extra_ldif {
            let file = dir.join("extra.ldif");
            std::fs::write(&file, ldif).expect("write LDIF");
            cmd.env("LDAP_EXTRA_LDIF", &file);
        }
        let out = match cmd.output() {
            Ok(o) => o,
            Err(e) => return skip(test, &format!("cannot run bash: {e}")),
        };
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            return skip(
                test,
                &format!(
                    "start-ldap.sh failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            );
        }
        let text = std::fs::read_to_string(dir.join("slapd/env")).expect("DIR/env");
        let env = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Some(Slapd { dir, env })
    }

    pub fn var(&self, k: &str) -> String {
        self.env
            .get(k)
            .cloned()
            .unwrap_or_else(|| panic!("{k} missing in DIR/env"))
    }

    pub fn url(&self) -> String {
        self.var("TESSERA_TEST_LDAP_URL")
    }

    pub fn script(&self, name: &str) {
        let st = Command::new("bash")
            .arg(self.dir.join("slapd").join(name))
            .status()
            .expect("run slapd script");
        assert!(st.success(), "{name} failed");
    }

    pub fn stop(&self) {
        self.script("stop.sh");
    }

    pub fn signal(&self, sig: &str) {
        let pid = std::fs::read_to_string(self.var("TESSERA_TEST_LDAP_PID_FILE")).expect("pid");
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.trim())
            .status()
            .expect("kill");
        assert!(st.success(), "kill -{sig}");
        wait_for_process_state(pid.trim(), sig);
    }

    /// A `[[providers]]` entry for this directory (`urls` default: this one).
    pub fn provider(&self, name: &str, flag: &str, urls: &[String], extra: &str) -> String {
        let urls: Vec<String> = if urls.is_empty() {
            vec![toml_string(&self.url())]
        } else {
            urls.iter().map(|u| toml_string(u)).collect()
        };
        let base = self.var("TESSERA_TEST_LDAP_BASE");
        format!(
            "\n[[providers]]\nkind = \"ldap\"\nname = \"{name}\"\nflag = \"{flag}\"\nurls = [{}]\n\
             bind_dn = {}\nbind_password = {}\nuser_base_dn = {}\ngroup_base_dn = {}\n\
             connect_timeout = 1\noperation_timeout = 1\n{extra}\n",
            urls.join(", "),
            toml_string(&self.var("TESSERA_TEST_LDAP_BIND_DN")),
            toml_string(&self.var("TESSERA_TEST_LDAP_BIND_PASSWORD")),
            toml_string(&format!("ou=people,{base}")),
            toml_string(&format!("ou=groups,{base}")),
        )
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        // stop.sh also resumes a paused server.
        let _ = Command::new("bash")
            .arg(self.dir.join("slapd/stop.sh"))
            .arg("--kill")
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits up to 2 s until every thread of `pid` is stopped (after STOP) or none is (after CONT):
/// `kill` returns once the signal is queued, and under load slapd has been seen to answer one
/// more request after that.
fn wait_for_process_state(pid: &str, sig: &str) {
    let want_stopped = match sig {
        "STOP" => true,
        "CONT" => false,
        _ => return,
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let states: Vec<char> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|dir| {
                dir.flatten()
                    .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
                    // The state follows the parenthesised command name.
                    .filter_map(|stat| stat.rsplit_once(") ").and_then(|(_, r)| r.chars().next()))
                    .collect()
            })
            .unwrap_or_default();
        let stopped = !states.is_empty() && states.iter().all(|&c| c == 'T' || c == 't');
        let running = states.iter().all(|&c| c != 'T' && c != 't');
        if (want_stopped && stopped) || (!want_stopped && running) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "slapd {pid} did not reach the state expected after {sig}: {states:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
