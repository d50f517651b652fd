#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    snapnest::runtime::serve(restore::handle).await
}
