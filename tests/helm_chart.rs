//! The Helm chart in `helm/smart-authz/`, rendered by the real `helm` and validated offline
//! against the Kubernetes schemas by `kubernetes-validate` (both installed by `.ci/run`:
//! `HELM_BIN`, `KUBERNETES_VALIDATE_BIN`). For the default values and every values file
//! under `ci/`: `helm lint --strict`, `helm template` for the oldest and newest Kubernetes
//! versions the chart claims, strict validation of every object, and the properties a
//! platform team relies on; and the configuration the chart renders is one the service
//! accepts.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The Kubernetes versions `helm template` renders for: the oldest the chart claims
/// (`kubeVersion: >=1.27.0-0`) and the newest the validator knows.
const KUBE_VERSIONS: [&str; 2] = ["1.27.0", "1.37.0"];

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("helm/smart-authz")
}

/// A tool from `variable`, else `name` on the PATH; `None` outside CI when it is missing.
fn tool(variable: &str, name: &str, version_arg: &str) -> Option<String> {
    let program = std::env::var(variable).unwrap_or_else(|_| name.to_owned());
    let found = Command::new(&program)
        .arg(version_arg)
        .output()
        .is_ok_and(|output| output.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI installs {name} (.ci/run): set {variable}"
        );
        eprintln!("note: {name} is not installed; the chart was not checked");
        return None;
    }
    Some(program)
}

fn helm() -> Option<String> {
    tool("HELM_BIN", "helm", "version")
}

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program).args(args).output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{program} {args:?}:\n{stdout}\n{stderr}"))
    }
}

/// `None` for the default values, else a file under `ci/`.
fn values_files() -> Vec<Option<PathBuf>> {
    let mut files: Vec<Option<PathBuf>> = std::fs::read_dir(chart().join("ci"))
        .unwrap()
        .map(|entry| Some(entry.unwrap().path()))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "the ci/ values files");
    files.insert(0, None);
    files
}

fn template(helm: &str, values: Option<&Path>, kube_version: &str, extra: &[&str]) -> String {
    try_template(helm, values, kube_version, extra).unwrap_or_else(|error| panic!("{error}"))
}

fn try_template(
    helm: &str,
    values: Option<&Path>,
    kube_version: &str,
    extra: &[&str],
) -> Result<String, String> {
    let chart = chart();
    let mut args = vec![
        "template",
        "release",
        chart.to_str().unwrap(),
        "--namespace",
        "fhir",
        "--kube-version",
        kube_version,
    ];
    let values = values.map(|path| path.to_str().unwrap().to_owned());
    if let Some(values) = &values {
        args.extend(["-f", values]);
    }
    args.extend(extra);
    run(helm, &args)
}

/// The rendered objects, as JSON.
fn objects(rendered: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(rendered)
        .map(|document| {
            let value: serde_norway::Value = serde::Deserialize::deserialize(document).unwrap();
            serde_json::to_value(value).unwrap()
        })
        .filter(|value| !value.is_null())
        .collect()
}

fn object<'a>(objects: &'a [Value], kind: &str) -> Option<&'a Value> {
    objects.iter().find(|object| object["kind"] == kind)
}

#[test]
fn the_chart_lints_renders_and_validates_for_every_values_file() {
    let Some(helm) = helm() else { return };
    let Some(validate) = tool(
        "KUBERNETES_VALIDATE_BIN",
        "kubernetes-validate",
        "--version",
    ) else {
        return;
    };
    let chart = chart();
    let chart = chart.to_str().unwrap();
    for values in values_files() {
        let label = values
            .as_deref()
            .map_or("default values".to_owned(), |path| {
                path.display().to_string()
            });
        let mut lint = vec!["lint", "--strict", chart];
        let path = values
            .as_ref()
            .map(|path| path.to_str().unwrap().to_owned());
        if let Some(path) = &path {
            lint.extend(["-f", path]);
        }
        run(&helm, &lint).unwrap_or_else(|error| panic!("{label}: {error}"));
        for kube_version in KUBE_VERSIONS {
            let rendered = template(&helm, values.as_deref(), kube_version, &[]);
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), &rendered).unwrap();
            let report = run(
                &validate,
                &[
                    "--strict",
                    "--kubernetes-version",
                    kube_version,
                    file.path().to_str().unwrap(),
                ],
            )
            .unwrap_or_else(|error| panic!("{label}, Kubernetes {kube_version}: {error}"));
            for object in objects(&rendered) {
                let kind = object["kind"].as_str().unwrap();
                if kind == "ServiceMonitor" {
                    // No schema for the Prometheus Operator's CRD: checked by structure.
                    check_service_monitor(&object, &objects(&rendered));
                } else {
                    let name = format!("{}/", kind.to_lowercase());
                    assert!(
                        report.contains(&format!("passed for resource {name}")),
                        "{label}, Kubernetes {kube_version}: {kind} was not validated:\n{report}"
                    );
                }
            }
        }
    }
}

/// The ServiceMonitor selects the chart's Service and scrapes its metrics port by name.
fn check_service_monitor(monitor: &Value, objects: &[Value]) {
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    let service = object(objects, "Service").expect("a Service");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        object(objects, "Deployment").unwrap()["spec"]["selector"]["matchLabels"]
    );
    for (label, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&service["metadata"]["labels"][label], value, "{label}");
    }
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["path"], "/metrics");
    let port = endpoint["port"].as_str().unwrap();
    assert!(
        service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|served| served["name"] == port),
        "the Service has no port {port}"
    );
    let interval = endpoint["interval"].as_str().unwrap();
    assert!(
        interval.ends_with('s') || interval.ends_with('m'),
        "{interval}"
    );
}

#[test]
fn the_app_version_is_the_services_version() {
    let chart = std::fs::read_to_string(chart().join("Chart.yaml")).unwrap();
    let chart: serde_norway::Value = serde_norway::from_str(&chart).unwrap();
    assert_eq!(chart["apiVersion"].as_str(), Some("v2"));
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(env!("CARGO_PKG_VERSION")),
        "Chart.yaml appVersion"
    );
    assert!(chart["kubeVersion"].as_str().is_some());
}

#[test]
fn the_pod_is_locked_down_and_probed_on_grpc_health() {
    let Some(helm) = helm() else { return };
    for values in values_files() {
        let objects = objects(&template(&helm, values.as_deref(), "1.37.0", &[]));
        let deployment = object(&objects, "Deployment").unwrap();
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["automountServiceAccountToken"], false);
        assert_eq!(
            pod["enableServiceLinks"], false,
            "no other Service's variables"
        );
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let container = &pod["containers"][0];
        let security = &container["securityContext"];
        assert_eq!(security["allowPrivilegeEscalation"], false);
        assert_eq!(security["readOnlyRootFilesystem"], true);
        assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
        assert!(container["resources"]["requests"]["memory"].is_string());
        assert!(container["resources"]["limits"]["memory"].is_string());
        let health_port = container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|port| port["name"] == "grpc-health")
            .unwrap()["containerPort"]
            .clone();
        for (probe, service) in [
            ("startupProbe", Some("liveness")),
            ("readinessProbe", None),
            ("livenessProbe", Some("liveness")),
        ] {
            assert_eq!(
                container[probe]["grpc"]["port"], health_port,
                "{probe}: native gRPC probe on the plaintext health port"
            );
            assert_eq!(
                container[probe]["grpc"]["service"].as_str(),
                service,
                "{probe}"
            );
        }
        // The service drains within the grace period, after its NOT_SERVING delay.
        let config = rendered_config(&objects);
        let delay = config["shutdown_delay_secs"].as_i64().unwrap();
        assert!(pod["terminationGracePeriodSeconds"].as_i64().unwrap() > delay);
        assert_eq!(
            config["health_listen"],
            format!("0.0.0.0:{health_port}").as_str()
        );
        let service_account = object(&objects, "ServiceAccount").unwrap();
        assert_eq!(service_account["automountServiceAccountToken"], false);
        // Istio picks the protocol from the port name.
        let service = object(&objects, "Service").unwrap();
        assert_eq!(service["spec"]["ports"][0]["name"], "grpc");
    }
}

fn rendered_config(objects: &[Value]) -> Value {
    let config_map = object(objects, "ConfigMap").unwrap();
    serde_json::from_str(config_map["data"]["config.json"].as_str().unwrap()).unwrap()
}

#[test]
fn a_configuration_change_rolls_the_pods() {
    let Some(helm) = helm() else { return };
    let checksum = |extra: &[&str]| {
        let objects = objects(&template(&helm, None, "1.37.0", extra));
        object(&objects, "Deployment").unwrap()["spec"]["template"]["metadata"]["annotations"]
            ["checksum/config"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let before = checksum(&[]);
    assert_eq!(before.len(), 64, "a SHA-256");
    assert_eq!(checksum(&[]), before, "stable");
    assert_ne!(
        checksum(&["--set", "config.policy.strict_scopes=true"]),
        before
    );
    assert_ne!(checksum(&["--set", "shutdownDelaySeconds=7"]), before);
}

#[test]
fn secrets_come_only_from_referenced_secrets() {
    let Some(helm) = helm() else { return };
    let values = chart().join("ci/tenants-mtls-values.yaml");
    let objects = objects(&template(&helm, Some(&values), "1.37.0", &[]));
    assert!(
        object(&objects, "Secret").is_none(),
        "the chart creates no Secret"
    );
    let pod = &object(&objects, "Deployment").unwrap()["spec"]["template"]["spec"];
    let volumes = pod["volumes"].as_array().unwrap();
    let secret_of = |name: &str| {
        volumes
            .iter()
            .find(|volume| volume["name"] == name)
            .unwrap_or_else(|| panic!("volume {name}"))["secret"]["secretName"]
            .clone()
    };
    assert_eq!(secret_of("tls"), "smart-authz-tls");
    assert_eq!(secret_of("client-ca"), "smart-authz-client-ca");
    assert_eq!(
        secret_of("secret-introspection"),
        "smart-authz-introspection"
    );
    let mounts = pod["containers"][0]["volumeMounts"].as_array().unwrap();
    assert!(mounts.iter().all(|mount| mount["readOnly"] == true));
    // The rendered [tls] points at the mounted Secrets.
    let config = rendered_config(&objects);
    assert_eq!(config["tls"]["cert_file"], "/etc/smart-authz/tls/tls.crt");
    assert_eq!(config["tls"]["key_file"], "/etc/smart-authz/tls/tls.key");
    assert_eq!(
        config["tls"]["client_ca_file"],
        "/etc/smart-authz/client-ca/ca.crt"
    );
    assert!(
        !objects.iter().any(|object| {
            let text = object.to_string();
            text.contains("client_secret\"") || text.contains("BEGIN PRIVATE KEY")
        }),
        "no secret value in any object"
    );
}

#[test]
fn the_rendered_configuration_is_one_the_service_accepts() {
    let Some(helm) = helm() else { return };
    for values in values_files().into_iter().skip(1) {
        let objects = objects(&template(&helm, values.as_deref(), "1.37.0", &[]));
        let mut config = rendered_config(&objects).to_string();
        // The Secret a pod would mount, here a file of the test's.
        let secret = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(secret.path(), "s3cret\n").unwrap();
        config = config.replace(
            "/etc/smart-authz/secrets/introspection/client-secret",
            secret.path().to_str().unwrap(),
        );
        let file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
        std::fs::write(file.path(), &config).unwrap();
        let loaded = smart_authz::config::Config::load_with_env(
            Some(file.path()),
            figment::providers::Serialized::defaults(serde_json::json!({})),
        )
        .unwrap_or_else(|error| panic!("{}: {error}", values.as_ref().unwrap().display()));
        assert_eq!(loaded.listen.port(), 50051);
        assert!(loaded.health_listen.is_some());
        // An example is a layout to copy: none the service warns about at start-up.
        assert_eq!(loaded.warnings(), Vec::<String>::new(), "{values:?}");
    }
}

#[test]
fn the_network_policy_admits_no_one_it_does_not_list() {
    let Some(helm) = helm() else { return };
    let unlisted = objects(&template(
        &helm,
        None,
        "1.37.0",
        &["--set", "networkPolicy.enabled=true"],
    ));
    let policy = object(&unlisted, "NetworkPolicy").unwrap();
    // With no peers listed, no rule may name the gRPC or metrics port: a rule with an
    // empty `from` admits every source.
    for rule in policy["spec"]["ingress"].as_array().unwrap() {
        assert_eq!(
            rule["ports"][0]["port"], "grpc-health",
            "only the health port is open: {rule}"
        );
    }
    let values = chart().join("ci/tenants-mtls-values.yaml");
    let listed = objects(&template(&helm, Some(&values), "1.37.0", &[]));
    let policy = object(&listed, "NetworkPolicy").unwrap();
    for rule in policy["spec"]["ingress"].as_array().unwrap() {
        if rule["ports"][0]["port"] != "grpc-health" {
            assert!(
                !rule["from"].as_array().unwrap().is_empty(),
                "a listed port names its peers: {rule}"
            );
        }
    }
    // The health port is open to every source unless its peers are listed.
    let health_rule = |policy: &Value| -> Value {
        policy["spec"]["ingress"]
            .as_array()
            .unwrap()
            .iter()
            .find(|rule| rule["ports"][0]["port"] == "grpc-health")
            .cloned()
            .unwrap()
    };
    assert!(health_rule(policy).get("from").is_none());
    let nodes = objects(&template(
        &helm,
        None,
        "1.37.0",
        &[
            "--set",
            "networkPolicy.enabled=true",
            "--set",
            "networkPolicy.healthFrom[0].ipBlock.cidr=10.0.0.0/16",
        ],
    ));
    let from = &health_rule(object(&nodes, "NetworkPolicy").unwrap())["from"];
    assert_eq!(from[0]["ipBlock"]["cidr"], "10.0.0.0/16", "{from}");
}

#[test]
fn the_schema_refuses_bad_values() {
    let Some(helm) = helm() else { return };
    for (set, why) in [
        ("replicaCount=0", "/replicaCount"),
        ("tls.enabled=true", "/tls/secretName"),
        ("config.listen=0.0.0.0:1", "/config"),
        // The chart's pods are reached over the network; a socket in them reaches no one.
        ("config.unix_listen=/run/grpc.sock", "/config"),
        ("config.tls.cert_file=x", "/config"),
        ("config.telemetry.metrics_listen=x", "/config"),
        ("config.fhir_version=r3", "/config/fhir_version"),
        ("ports.grpc=70000", "/ports/grpc"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("unknownKey=1", "unknownKey"),
        ("shutdownDelaySeconds=600", "/shutdownDelaySeconds"),
        // The pod would be killed before its drain ends.
        (
            "shutdownDelaySeconds=20",
            "terminationGracePeriodSeconds must be at least",
        ),
        ("serviceMonitor.interval=often", "/serviceMonitor/interval"),
        // What YAML makes of a bare `audit: off`.
        ("config.telemetry.audit=false", "/config/telemetry/audit"),
        (
            "config.telemetry.audit=everything",
            "/config/telemetry/audit",
        ),
        // A client CA without TLS would be dropped, and the service run in plaintext.
        ("tls.clientCA.secretName=ca", "/tls/clientCA/secretName"),
        // Callers are told apart by their client certificates: the service refuses them
        // without a client CA, which would leave the pods crash-looping.
        (
            "config.callers[0].identity=spiffe://a,config.callers[0].fhir_servers[0]=*",
            "/tls/clientCA/secretName",
        ),
        // Reachable from outside the cluster, tokens would cross it in plaintext.
        ("service.type=LoadBalancer", "/tls/enabled"),
        ("service.type=NodePort", "/tls/enabled"),
        // The chart opens no port for the AuthZEN face.
        ("config.authzen.listen=0.0.0.0:8080", "/config"),
        // Larger bodies need a larger budget: the service would refuse to start.
        (
            "config.max_request_bytes=26214400",
            "must be at least twice config.max_request_bytes",
        ),
        (
            "topologySpread.zoneWhenUnsatisfiable=Never",
            "/topologySpread/zoneWhenUnsatisfiable",
        ),
        // Secrets come from mounted files, never from the ConfigMap.
        (
            "config.issuers[0].issuer=https://as.example,config.issuers[0].client_secret=s",
            "'not' failed",
        ),
    ] {
        let error = try_template(&helm, None, "1.37.0", &["--set", set])
            .expect_err(&format!("--set {set} must be refused"));
        assert!(error.contains(why), "--set {set}: {error}");
    }
    // What the refusals above must not catch.
    for set in [
        "config.max_request_bytes=20971520,config.max_buffered_request_bytes=41943040",
        // The AuthZEN face off, as the service reads an empty listen.
        "config.authzen.listen=",
    ] {
        try_template(&helm, None, "1.37.0", &["--set", set])
            .unwrap_or_else(|error| panic!("--set {set} must be accepted: {error}"));
    }
    let error = try_template(&helm, None, "1.26.0", &[]).expect_err("kubeVersion");
    assert!(
        error.contains("kubeVersion") || error.contains("incompatible"),
        "{error}"
    );
}

/// `service.headless` adds a Service that lists every pod on the gRPC port, for consistent
/// hashing (docs/operations.md); it selects the same pods and offers no metrics port, so the
/// ServiceMonitor, which selects Services by the same labels, does not scrape a pod twice.
#[test]
fn a_headless_service_lists_every_pod_when_asked() {
    let Some(helm) = helm() else { return };
    let services = |extra: &[&str]| -> Vec<Value> {
        objects(&template(&helm, None, "1.37.0", extra))
            .into_iter()
            .filter(|object| object["kind"] == "Service")
            .collect()
    };
    assert_eq!(services(&[]).len(), 1, "no headless Service unless asked");
    let services = services(&["--set", "service.headless=true"]);
    assert_eq!(services.len(), 2);
    let (plain, headless) = (&services[0], &services[1]);
    assert_eq!(headless["metadata"]["name"], "release-smart-authz-headless");
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(headless["spec"]["selector"], plain["spec"]["selector"]);
    let ports = headless["spec"]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["name"], "grpc");
    assert_eq!(ports[0]["targetPort"], "grpc");

    // A name of 63 characters, the most a Service may have: the headless one still fits,
    // and is not the plain Service's.
    let long = format!("fullnameOverride={}", "a".repeat(63));
    let services: Vec<Value> = objects(&template(
        &helm,
        None,
        "1.37.0",
        &["--set", "service.headless=true", "--set", &long],
    ))
    .into_iter()
    .filter(|object| object["kind"] == "Service")
    .collect();
    let names: Vec<&str> = services
        .iter()
        .map(|service| service["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    assert_ne!(names[0], names[1], "{names:?}");
    assert!(names.iter().all(|name| name.len() <= 63), "{names:?}");
}

/// Spreading over zones never leaves pods Pending on a cluster whose nodes carry no zone
/// label, whatever the spread over nodes asks, unless asked for itself.
#[test]
fn the_zone_spread_is_its_own_choice() {
    let Some(helm) = helm() else { return };
    let spread = |extra: &[&str]| -> Vec<(String, String)> {
        let objects = objects(&template(&helm, None, "1.37.0", extra));
        let deployment = object(&objects, "Deployment").unwrap();
        deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|constraint| {
                (
                    constraint["topologyKey"].as_str().unwrap().to_owned(),
                    constraint["whenUnsatisfiable"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let strict_nodes = spread(&["--set", "topologySpread.whenUnsatisfiable=DoNotSchedule"]);
    assert!(strict_nodes.contains(&(
        "kubernetes.io/hostname".to_owned(),
        "DoNotSchedule".to_owned()
    )));
    assert!(strict_nodes.contains(&(
        "topology.kubernetes.io/zone".to_owned(),
        "ScheduleAnyway".to_owned()
    )));
    let strict_zones = spread(&[
        "--set",
        "topologySpread.zoneWhenUnsatisfiable=DoNotSchedule",
    ]);
    assert!(strict_zones.contains(&(
        "topology.kubernetes.io/zone".to_owned(),
        "DoNotSchedule".to_owned()
    )));
}
