//! `tenants-receiver` as a real process (see `examples_testkit::tenants`).

#[test]
fn one_endpoint_serves_many_tenants() {
    examples_testkit::tenants::one_endpoint_serves_many_tenants(env!(
        "CARGO_BIN_EXE_tenants-receiver"
    ));
}
