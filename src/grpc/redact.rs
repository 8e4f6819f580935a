//! `Debug` for the messages that carry a token, written by hand (`build.rs` skips the
//! generated one): a token must never reach a log line, and the generated `Debug` of a
//! request would print it, and an `Authorization` header among an HTTP request's headers.
//! Each impl destructures its message, so a field added to the proto breaks the build here
//! until it is printed or left out on purpose.

use std::fmt;

use super::pb;

/// Stands for a token, or a header value, in `Debug` output.
const LEFT_OUT: &str = "<left out>";

impl fmt::Debug for pb::CheckAccessRequest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pb::CheckAccessRequest {
            access_token: _,
            request,
            stored,
            proposed,
            fhir_server,
            request_id,
            fhir_version,
        } = self;
        formatter
            .debug_struct("CheckAccessRequest")
            .field("access_token", &LEFT_OUT)
            .field("request", request)
            .field("stored", stored)
            .field("proposed", proposed)
            .field("fhir_server", fhir_server)
            .field("request_id", request_id)
            .field("fhir_version", fhir_version)
            .finish()
    }
}

impl fmt::Debug for pb::BatchCheckAccessRequest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pb::BatchCheckAccessRequest {
            access_token: _,
            bundle_type,
            entries,
            fhir_server,
            request_id,
            fhir_version,
        } = self;
        formatter
            .debug_struct("BatchCheckAccessRequest")
            .field("access_token", &LEFT_OUT)
            .field("bundle_type", bundle_type)
            .field("entries", entries)
            .field("fhir_server", fhir_server)
            .field("request_id", request_id)
            .field("fhir_version", fhir_version)
            .finish()
    }
}

impl fmt::Debug for pb::IntrospectTokenRequest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pb::IntrospectTokenRequest {
            token: _,
            fhir_server,
            request_id,
        } = self;
        formatter
            .debug_struct("IntrospectTokenRequest")
            .field("token", &LEFT_OUT)
            .field("fhir_server", fhir_server)
            .field("request_id", request_id)
            .finish()
    }
}

impl fmt::Debug for pb::FilterResourcesRequest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pb::FilterResourcesRequest {
            access_token: _,
            request,
            response,
            fhir_server,
            request_id,
            fhir_version,
        } = self;
        formatter
            .debug_struct("FilterResourcesRequest")
            .field("access_token", &LEFT_OUT)
            .field("request", request)
            .field("response", &format_args!("<{} bytes>", response.len()))
            .field("fhir_server", fhir_server)
            .field("request_id", request_id)
            .field("fhir_version", fhir_version)
            .finish()
    }
}

/// The oneofs of the skipped messages lose their generated `Debug` with them.
impl fmt::Debug for pb::check_access_request::Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fhir(request) => formatter.debug_tuple("Fhir").field(request).finish(),
            Self::Http(request) => formatter.debug_tuple("Http").field(request).finish(),
        }
    }
}

impl fmt::Debug for pb::filter_resources_request::Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fhir(request) => formatter.debug_tuple("Fhir").field(request).finish(),
            Self::Http(request) => formatter.debug_tuple("Http").field(request).finish(),
        }
    }
}

/// The path without its query, which may carry the token (`?access_token=`, RFC 6750
/// §2.3); header names only: a value may be the token (`Authorization`), a cookie or an API
/// key.
impl fmt::Debug for pb::HttpRequest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pb::HttpRequest {
            method,
            path,
            headers,
            body,
        } = self;
        let mut names: Vec<&str> = headers.keys().map(String::as_str).collect();
        names.sort_unstable();
        formatter
            .debug_struct("HttpRequest")
            .field("method", method)
            .field(
                "path",
                &match path.split_once('?') {
                    Some((path, _)) => format!("{path}?{LEFT_OUT}"),
                    None => path.clone(),
                },
            )
            .field(
                "headers",
                &names
                    .iter()
                    .map(|name| (name, LEFT_OUT))
                    .collect::<Vec<_>>(),
            )
            .field("body_bytes", &body.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::pb;

    const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0.c2lnbmF0dXJl";

    fn http(authorization: &str) -> pb::HttpRequest {
        pb::HttpRequest {
            method: "GET".to_owned(),
            path: format!("Observation/o1?access_token={authorization}"),
            headers: [(
                "authorization".to_owned(),
                format!("Bearer {authorization}"),
            )]
            .into(),
            // A search's form body may carry the token too (RFC 6750 §2.2).
            body: format!("access_token={authorization}").into_bytes(),
        }
    }

    #[test]
    fn no_request_prints_its_token() {
        let printed = [
            format!(
                "{:?}",
                pb::CheckAccessRequest {
                    access_token: TOKEN.to_owned(),
                    request: Some(pb::check_access_request::Request::Http(http(TOKEN))),
                    fhir_server: "ehr".to_owned(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                pb::BatchCheckAccessRequest {
                    access_token: TOKEN.to_owned(),
                    entries: vec![pb::BatchEntry {
                        request: Some(pb::batch_entry::Request::Http(http(TOKEN))),
                        ..Default::default()
                    }],
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                pb::IntrospectTokenRequest {
                    token: TOKEN.to_owned(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                pb::FilterResourcesRequest {
                    access_token: TOKEN.to_owned(),
                    request: Some(pb::filter_resources_request::Request::Http(http(TOKEN))),
                    response: TOKEN.as_bytes().to_vec(),
                    ..Default::default()
                }
            ),
        ];
        for printed in printed {
            assert!(!printed.contains("c2VjcmV0"), "{printed}");
            assert!(printed.contains("<left out>"), "{printed}");
        }
        // What is not secret still shows.
        let printed = format!("{:?}", http(TOKEN));
        assert!(printed.contains("Observation/o1") && printed.contains("authorization"));
        assert!(!printed.contains("c2VjcmV0"), "{printed}");
    }
}
