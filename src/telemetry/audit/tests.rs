use std::sync::{Arc, Mutex};

use tracing_subscriber::layer::SubscriberExt as _;

use super::*;

#[test]
fn each_event_is_one_json_line_with_its_fields_escaped() {
    let written = Arc::new(Mutex::new(Vec::<u8>::new()));
    let sink = Arc::clone(&written);
    let writer = move || CaptureWriter(Arc::clone(&sink));
    let subscriber = tracing_subscriber::registry().with(AuditLayer::new(writer));
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(
            target: AUDIT_TARGET,
            decision = "deny",
            resource_id = "a\"b\\c\nd",
            entry = 3_usize,
            offset = -2_i64,
            granted = false,
            client_id = "\u{1}é\u{2028}",
            reason = ?"a \"debug\" value",
            absent = Option::<&str>::None,
        );
    });
    let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
    assert_eq!(line["decision"], "deny");
    assert_eq!(line["resource_id"], "a\"b\\c\nd");
    assert_eq!(line["entry"], 3);
    assert_eq!(line["offset"], -2);
    assert_eq!(line["granted"], false);
    assert_eq!(line["client_id"], "\u{1}é\u{2028}");
    assert_eq!(line["reason"], "\"a \\\"debug\\\" value\"");
    assert!(line.get("absent").is_none());
    assert!(line["time"].as_str().unwrap().ends_with('Z'));
}

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
