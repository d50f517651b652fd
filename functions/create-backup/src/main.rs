#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    snapnest::runtime::serve(create_backup::handle).await
}
