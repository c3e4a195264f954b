//! Finding the third-party tools the interop tests drive (node packages, the Python venv,
//! Chromium) and where their artifacts go. A missing tool skips the test with a message,
//! unless `TESSERA_TEST_REQUIRE_SERVICES=1`, where it fails.

use std::path::PathBuf;

/// `tests/interop`: `node_modules` and the Python venv `.venv`.
pub fn interop_dir() -> PathBuf {
    std::env::var_os("TESSERA_INTEROP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop"))
}

/// `tests/artifacts` (screenshots, captured outputs), created if missing.
pub fn artifacts_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/artifacts");
    std::fs::create_dir_all(&d).expect("artifacts dir");
    d
}

/// `None` (after saying why) when a tool is missing and services are not required.
pub fn tool(path: PathBuf, what: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    let msg = format!(
        "{what} is missing ({}): run scripts/install-test-deps.sh",
        path.display()
    );
    if std::env::var("TESSERA_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

/// `program` found on PATH (or a name that does not exist, for [`tool`] to report).
pub fn on_path(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(program))
                .find(|n| n.exists())
        })
        .unwrap_or_else(|| PathBuf::from(program))
}

/// Node, once the interop package `package` is installed in `tests/interop/node_modules`.
pub fn node_with(package: &str) -> Option<PathBuf> {
    let node = tool(on_path("node"), "node")?;
    tool(
        interop_dir().join("node_modules").join(package),
        "tests/interop/node_modules",
    )?;
    Some(node)
}

/// The Python of the interop venv.
pub fn python() -> Option<PathBuf> {
    tool(
        interop_dir().join(".venv/bin/python"),
        "the Python venv tests/interop/.venv",
    )
}
