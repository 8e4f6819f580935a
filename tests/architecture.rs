//! The layering of the code, checked from its imports.
//!
//! - The engine (`smart-authz-engine`: `decision`, `smart`, `fhir`) stays pure: no I/O, async
//!   runtime, network or clock, so it can be called from anywhere and tested exhaustively.
//!   Its own crate keeps tokio and friends out of its dependencies; this test keeps `std::fs`,
//!   `std::net` and the clock out of its code.
//! - Every module imports only the modules below it in [`LAYERS`]: no import runs upward or
//!   sideways, so the tree has no import circle and each layer can be read on its own.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::path::{Path, PathBuf};

/// The service crate's layers, top first. A module may import any module of a lower layer,
/// never one of its own layer (another module) or of a layer above.
const LAYERS: &[&[&str]] = &[
    &["main"],
    &["app"],
    &["mint"],
    &["explain"],
    &["grpc", "envoy", "authzen"],
    &["authorize"],
    &["telemetry"],
    &["token"],
    &["config"],
    // The engine crate, re-exported as `smart_authz::{decision, smart, fhir}`.
    &["decision"],
    &["smart"],
    &["fhir"],
];

/// The engine crate's own layers.
const ENGINE_LAYERS: &[&[&str]] = &[&["decision"], &["smart"], &["fhir"]];

const IMPURE: [&str; 10] = [
    "tokio",
    "tonic",
    "reqwest",
    "moka",
    "std::fs",
    "std::net",
    "std::time",
    "SystemTime",
    "async fn",
    ".await",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn engine_src() -> PathBuf {
    root().join("crates/smart-authz-engine/src")
}

fn rust_files(directory: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(directory).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
}

/// The lines of `path` that are code (comment lines left out).
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .map(|(index, line)| (index + 1, line.to_owned()))
        .collect()
}

/// The top-level module a file of `src` belongs to (`src/token/jwks.rs` -> `token`).
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    first.to_str().unwrap().trim_end_matches(".rs").to_owned()
}

fn rank(layers: &[&[&str]], module: &str) -> Option<usize> {
    layers.iter().position(|layer| layer.contains(&module))
}

/// The modules a line names through `prefix` (`crate::`, `smart_authz::`): `use crate::x`,
/// `crate::x::y`, `use crate::{x, y}`.
fn imported_modules(line: &str, prefix: &str) -> Vec<String> {
    let mut modules = Vec::new();
    for (start, _) in line.match_indices(prefix) {
        let preceded_by_path = line[..start]
            .chars()
            .next_back()
            .is_some_and(|before| before.is_alphanumeric() || before == '_' || before == ':');
        if preceded_by_path {
            continue;
        }
        let rest = &line[start + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = group.split('}').next().unwrap_or_default();
            for item in group.split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|character| character.is_alphanumeric() || *character == '_')
                    .collect();
                if !name.is_empty() {
                    modules.push(name);
                }
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|character| character.is_alphanumeric() || *character == '_')
            .collect();
        if !name.is_empty() {
            modules.push(name);
        }
    }
    modules
}

/// Every import in `files` that runs upward or sideways in `layers`.
fn violations(src: &Path, files: &[PathBuf], layers: &[&[&str]], prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    for file in files {
        let module = module_of(src, file);
        let Some(own_rank) = rank(layers, &module) else {
            continue;
        };
        for (number, line) in code_lines(file) {
            for imported in imported_modules(&line, prefix) {
                if imported == module {
                    continue;
                }
                let Some(imported_rank) = rank(layers, &imported) else {
                    continue;
                };
                if imported_rank <= own_rank {
                    found.push(format!(
                        "{}:{number}: `{module}` imports `{imported}`, which is not below it",
                        file.display()
                    ));
                }
            }
        }
    }
    found
}

#[test]
fn every_module_of_the_service_is_in_the_layer_table() {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let unknown: Vec<String> = files
        .iter()
        .map(|file| module_of(&src, file))
        .filter(|module| module != "lib" && rank(LAYERS, module).is_none())
        .collect();
    assert!(
        unknown.is_empty(),
        "modules missing from LAYERS: {unknown:?}"
    );
}

#[test]
fn no_module_of_the_service_imports_upward_or_sideways() {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let library: Vec<PathBuf> = files
        .iter()
        .filter(|file| !file.ends_with("main.rs"))
        .cloned()
        .collect();
    let mut found = violations(&src, &library, LAYERS, "crate::");
    // The binary names the library by its crate name.
    found.extend(violations(
        &src,
        &[src.join("main.rs")],
        LAYERS,
        "smart_authz::",
    ));
    assert!(found.is_empty(), "layer rule broken:\n{}", found.join("\n"));
}

#[test]
fn no_module_of_the_engine_imports_upward_or_sideways() {
    let src = engine_src();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: Vec<PathBuf> = files
        .into_iter()
        .filter(|file| !file.ends_with("lib.rs"))
        .collect();
    let found = violations(&src, &modules, ENGINE_LAYERS, "crate::");
    assert!(found.is_empty(), "layer rule broken:\n{}", found.join("\n"));
}

#[test]
fn the_engine_does_no_io() {
    let mut files = Vec::new();
    rust_files(&engine_src(), &mut files);
    let mut offenders = Vec::new();
    for file in &files {
        for (number, line) in code_lines(file) {
            for word in IMPURE {
                if line.contains(word) {
                    offenders.push(format!("{}:{number}: {word}", file.display()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "I/O in the engine:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_engine_depends_on_no_runtime_or_network_crate() {
    let manifest =
        std::fs::read_to_string(root().join("crates/smart-authz-engine/Cargo.toml")).unwrap();
    for forbidden in [
        "tokio",
        "tonic",
        "reqwest",
        "moka",
        "opentelemetry",
        "hyper",
    ] {
        assert!(
            !manifest.contains(forbidden),
            "the engine crate depends on {forbidden}"
        );
    }
}

#[test]
fn the_import_reader_sees_every_form() {
    assert_eq!(
        imported_modules("use crate::token::Foo;", "crate::"),
        ["token"]
    );
    assert_eq!(
        imported_modules("use crate::{config, token::X};", "crate::"),
        ["config", "token"]
    );
    assert_eq!(
        imported_modules("    let x = crate::envoy::y();", "crate::"),
        ["envoy"]
    );
    assert!(imported_modules("use other_crate::token;", "crate::").is_empty());
}
