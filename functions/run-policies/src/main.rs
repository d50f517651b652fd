#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    snapnest_lambda::runtime::serve(run_policies::handle).await
}
