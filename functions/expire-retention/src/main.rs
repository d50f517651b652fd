#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    snapnest_lambda::runtime::serve(expire_retention::handle).await
}
