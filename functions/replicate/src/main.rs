#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    snapnest::runtime::serve(replicate::handle).await
}
