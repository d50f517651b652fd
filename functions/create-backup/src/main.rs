#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    snapnest_lambda::runtime::serve(create_backup::handle).await
}
