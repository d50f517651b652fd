#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    snapnest::runtime::serve(admin_api::handle).await
}
