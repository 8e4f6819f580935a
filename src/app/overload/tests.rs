use super::*;

fn framed(message: &[u8]) -> Vec<u8> {
    let mut framed = vec![0];
    framed.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(message);
    framed
}

const BATCH: &str = "/smartauthz.v1.AuthzService/BatchCheckAccess";

#[test]
fn one_message_is_weighed() {
    let message = [0x1a, 0x00].repeat(10);
    assert_eq!(
        decoding_cost(BATCH, &framed(&message)).unwrap(),
        wire::weigh(&message, wire::Schema::BATCH).unwrap()
    );
    assert_eq!(
        decoding_cost(
            "/envoy.service.auth.v3.Authorization/Check",
            &framed(&message)
        )
        .unwrap(),
        wire::weigh(&message, wire::Schema::ENVOY).unwrap()
    );
    assert_eq!(
        decoding_cost(
            "/grpc.reflection.v1.ServerReflection/Info",
            &framed(&message)
        )
        .unwrap(),
        0
    );
}

/// tonic decodes every message of a unary call's body: an empty first message and a
/// costly second one would otherwise be weighed as the first alone.
#[test]
fn a_second_message_in_a_unary_call_is_refused() {
    let costly = framed(&[0x1a, 0x00].repeat(2 * 1024 * 1024));
    let body = [framed(&[]), costly].concat();
    let refused = decoding_cost(BATCH, &body).unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
}
