//! The API contract of `smartauthz.v1`, checked with the real buf CLI (npm
//! `@bufbuild/buf`, installed by `.ci/run` through `tests/node`): `buf lint` with the
//! exceptions `buf.yaml` writes down, and `buf breaking` against the last released proto
//! in `api/released/`, so `v1` only ever grows (docs/api.md).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The release `buf breaking` compares with.
const RELEASED: &str = "api/released/0.1.0";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `BUF_BIN`, else the one `tests/node` installs; `None` outside CI when neither is there.
fn buf() -> Option<PathBuf> {
    let program = std::env::var_os("BUF_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("tests/node/node_modules/.bin/buf"));
    let found = Command::new(&program)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI installs buf (.ci/run, tests/node): set BUF_BIN"
        );
        eprintln!("note: buf is not installed; the API contract was not checked");
        return None;
    }
    Some(program)
}

fn run(buf: &Path, directory: &Path, args: &[&str]) -> Output {
    Command::new(buf)
        .current_dir(directory)
        .args(args)
        // buf keeps a module cache; a test must not depend on the user's.
        .env(
            "BUF_CACHE_DIR",
            std::env::temp_dir().join("smart-authz-buf-cache"),
        )
        .output()
        .unwrap()
}

fn report(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_api_passes_buf_lint_with_only_its_written_exceptions() {
    let Some(buf) = buf() else { return };
    let output = run(&buf, root(), &["lint"]);
    assert!(output.status.success(), "buf lint:\n{}", report(&output));
    // Each exception is a comment beside the value it excuses, with its reason.
    let proto = std::fs::read_to_string(root().join("proto/smartauthz/v1/authz.proto")).unwrap();
    let config = std::fs::read_to_string(root().join("buf.yaml")).unwrap();
    let ignored: Vec<&str> = proto
        .lines()
        .zip(proto.lines().skip(1))
        .filter(|(line, _)| line.contains("buf:lint:ignore"))
        .map(|(_, next)| next.trim().split(' ').next().unwrap())
        .collect();
    assert_eq!(ignored, ["DECISION_DENY", "OBLIGATION_NONE"]);
    for value in ignored {
        assert!(
            config.contains(value),
            "buf.yaml gives no reason for {value}"
        );
    }
}

#[test]
fn the_api_is_compatible_with_the_last_release() {
    let Some(buf) = buf() else { return };
    let output = run(&buf, root(), &["breaking", "--against", RELEASED]);
    assert!(
        output.status.success(),
        "buf breaking:\n{}",
        report(&output)
    );
}

/// The check above can fail: the same proto with a field renumbered is refused.
#[test]
fn a_breaking_change_is_refused() {
    let Some(buf) = buf() else { return };
    let changed = tempfile::tempdir().unwrap();
    let module = changed.path().join("proto/smartauthz/v1");
    std::fs::create_dir_all(&module).unwrap();
    let proto = std::fs::read_to_string(root().join("proto/smartauthz/v1/authz.proto")).unwrap();
    let renumbered = proto.replacen("string access_token = 1;", "string access_token = 99;", 1);
    assert_ne!(renumbered, proto);
    std::fs::write(module.join("authz.proto"), renumbered).unwrap();
    let against = root().join(RELEASED);
    let output = run(
        &buf,
        changed.path(),
        &["breaking", "proto", "--against", against.to_str().unwrap()],
    );
    assert!(!output.status.success(), "{}", report(&output));
    assert!(
        report(&output).contains("access_token"),
        "{}",
        report(&output)
    );
}
