//! The engine stays pure: `smart`, `fhir` and `decision` use no I/O, async runtime, network
//! or clock, so they can be called from anywhere and tested exhaustively.

use std::path::Path;

const FORBIDDEN: [&str; 10] = [
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

fn check(directory: &Path, offenders: &mut Vec<String>) {
    for entry in std::fs::read_dir(directory).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            check(&path, offenders);
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (number, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for word in FORBIDDEN {
                if line.contains(word) {
                    offenders.push(format!("{}:{}: {word}", path.display(), number + 1));
                }
            }
        }
    }
}

#[test]
fn the_pure_modules_do_no_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    for module in ["smart", "fhir", "decision"] {
        check(&root.join(module), &mut offenders);
    }
    assert!(
        offenders.is_empty(),
        "I/O in the pure core:\n{}",
        offenders.join("\n")
    );
}
