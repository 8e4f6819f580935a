//! What can be checked of the `Dockerfile` without a container runtime (none runs in CI):
//! the binary it copies needs no shared library beyond the C runtime that the distroless
//! `cc` base image carries, and its build stage is a toolchain the crate accepts.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::process::Command;

/// glibc and libgcc: what `gcr.io/distroless/cc-debian12` provides (and the Linux vDSO).
const IN_THE_BASE_IMAGE: [&str; 7] = [
    "linux-vdso.so.1",
    "libc.so.6",
    "libm.so.6",
    "libgcc_s.so.1",
    "libdl.so.2",
    "libpthread.so.0",
    "ld-linux-x86-64.so.2",
];

fn dockerfile() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap()
}

#[test]
fn the_binary_needs_only_the_c_runtime_of_the_base_image() {
    assert!(dockerfile().contains("FROM gcr.io/distroless/cc-debian12:nonroot"));
    let Ok(output) = Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_smart-authz"))
        .output()
    else {
        eprintln!("note: no ldd here; the binary's libraries were not checked");
        return;
    };
    let report = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{report}");
    for line in report.lines() {
        let library = line.split_whitespace().next().unwrap();
        let name = library.rsplit('/').next().unwrap();
        assert!(
            IN_THE_BASE_IMAGE.contains(&name),
            "the binary links {library}, which the distroless cc image does not have"
        );
    }
}

#[test]
fn the_build_stage_is_a_toolchain_the_crate_accepts() {
    let dockerfile = dockerfile();
    let image = dockerfile
        .lines()
        .find_map(|line| line.strip_prefix("FROM rust:"))
        .expect("a rust build stage");
    let version = image.split(['-', ' ']).next().unwrap();
    let minimum = env!("CARGO_PKG_RUST_VERSION");
    let parse = |version: &str| -> Vec<u32> {
        version
            .split('.')
            .map(|part| part.parse().unwrap())
            .collect()
    };
    assert!(
        parse(version) >= parse(minimum),
        "the image builds with Rust {version}, the crate needs {minimum}"
    );
    assert!(
        image.contains("bookworm"),
        "the build stage's glibc must be Debian 12's, the runtime image's"
    );
}

/// The build stage runs scripts/pgo-build.sh, which trains on examples/perf with the test keys:
/// the script must parse, and the build context must keep what it reads.
#[test]
fn the_profile_guided_build_has_what_it_runs() {
    let root = env!("CARGO_MANIFEST_DIR");
    assert!(dockerfile().contains("scripts/pgo-build.sh /out/smart-authz"));
    let script = format!("{root}/scripts/pgo-build.sh");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&script).unwrap().permissions());
    assert!(mode & 0o111 != 0, "{script} is not executable");
    let parsed = Command::new("bash").args(["-n", &script]).output().unwrap();
    assert!(
        parsed.status.success(),
        "{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let ignored = std::fs::read_to_string(format!("{root}/.dockerignore")).unwrap();
    for needed in ["scripts", "examples", "tests"] {
        assert!(
            !ignored
                .lines()
                .any(|line| line.trim_end_matches('/') == needed),
            ".dockerignore leaves {needed}/ out of the build context"
        );
    }
}
