//! The README's first run, as a newcomer does it: start the binary with no configuration,
//! mint a development token with the binary, call CheckAccess, see allow and deny.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{check_http, decision};
use smart_authz::grpc::pb;
use smart_authz::grpc::pb::authz_service_client::AuthzServiceClient;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_smart-authz"))
}

fn mint(args: &[&str]) -> String {
    let output = binary()
        .arg("token")
        .args(args)
        .output()
        .expect("token runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_in_development_configuration_answers() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let _server = Running(
        binary()
            .args(["serve", "--listen", &address])
            .env_remove("SMART_AUTHZ_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve starts"),
    );
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}")).unwrap();
    let mut channel = None;
    for _ in 0..150 {
        if let Ok(connected) = endpoint.connect().await {
            channel = Some(connected);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut client = AuthzServiceClient::new(channel.expect("the server listens"));

    let token = mint(&["--scope", "patient/*.rs", "--patient", "123"]);
    let allowed = client
        .check_access(check_http(&token, "GET", "Observation?code=x"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        decision(&allowed),
        pb::Decision::Allow,
        "{}",
        allowed.message
    );
    assert_eq!(allowed.grants[0].compartment, "Patient/123");

    let denied = client
        .check_access(check_http(&token, "GET", "Patient/456/Observation"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decision(&denied), pb::Decision::Deny);
    assert_eq!(denied.reason, pb::Reason::OutsideCompartment as i32);

    let write = client
        .check_access(check_http(&token, "POST", "Observation"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(write.reason, pb::Reason::NoMatchingScope as i32);
}
