//! Prints the OpenAPI description of the HTTP API, generated from the functions' routes:
//! `cargo run -p snapnest-e2e --bin openapi > docs/openapi.yaml` (tests/tests/openapi.rs checks
//! the committed file is what this prints).

fn main() {
    print!("{}", snapnest_e2e::openapi_yaml());
}
