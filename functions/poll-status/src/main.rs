#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    snapnest_lambda::runtime::serve(poll_status::handle).await
}
