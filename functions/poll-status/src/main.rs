#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    snapnest::runtime::serve(poll_status::handle).await
}
