//! Running the real `tessera` binary.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a server may take to print its "listening" line (first start creates RSA keys).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A `tessera` invocation in a working directory, with no inherited `TESSERA_*` variables.
#[derive(Debug, Clone)]
pub struct Tessera {
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Tessera {
    pub fn new(cwd: &Path) -> Self {
        Self {
            cwd: cwd.to_owned(),
            env: Vec::new(),
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
        cmd.args(args).current_dir(&self.cwd);
        for (k, _) in std::env::vars_os() {
            if k.to_str()
                .is_some_and(|k| k.starts_with("TESSERA_") || k == "RUST_LOG")
            {
                cmd.env_remove(k);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Run to completion.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, "")
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tessera");
        if let Some(mut s) = child.stdin.take() {
            s.write_all(stdin.as_bytes()).expect("write stdin");
        }
        Run(child.wait_with_output().expect("wait for tessera"))
    }

    /// Start a long-running command (`serve`, `quickstart`) and wait for its "listening" line.
    pub fn serve(&self, args: &[&str]) -> ServeProcess {
        let mut child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tessera");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Drain stderr so the server never blocks on a full pipe; keep it for failure reports.
        let (err_tx, err_rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = err_tx.send(line);
            }
        });
        let mut output = Vec::new();
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let done = line.starts_with("tessera listening on ");
                    output.push(line);
                    if done {
                        break;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let errors: Vec<String> = err_rx.try_iter().collect();
                    panic!(
                        "tessera {args:?} did not report listening.\nstdout:\n{}\nstderr:\n{}",
                        output.join("\n"),
                        errors.join("\n")
                    );
                }
            }
        }
        ServeProcess {
            child,
            output,
            stderr: err_rx,
        }
    }
}

/// A finished invocation.
#[derive(Debug)]
pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    /// Panics with both streams unless the exit code is 0.
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code(),
            0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// A running `tessera serve`. Killed when dropped.
pub struct ServeProcess {
    child: Child,
    /// Standard output up to and including the "listening" line.
    pub output: Vec<String>,
    stderr: mpsc::Receiver<String>,
}

impl ServeProcess {
    /// The `http://127.0.0.1:PORT` from the "tessera listening on …" line.
    pub fn listen_url(&self) -> String {
        let line = self.output.last().expect("listening line");
        let rest = line
            .strip_prefix("tessera listening on ")
            .expect("listening line");
        rest.split_whitespace().next().expect("URL").to_owned()
    }

    /// The issuer from the "listening" line.
    pub fn issuer(&self) -> String {
        let line = self.output.last().expect("listening line");
        let after = line
            .split("(issuer ")
            .nth(1)
            .expect("issuer in listening line");
        after
            .split([',', ')'])
            .next()
            .expect("issuer")
            .trim()
            .to_owned()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait: the exit status of a graceful shutdown.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success(), "kill -TERM failed");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "tessera did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything the server wrote to standard error so far.
    pub fn stderr_so_far(&self) -> String {
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
