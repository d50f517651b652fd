//! create-backup's Lambda entry point: the service is built once at cold start, then every request
//! goes through create-backup's routes.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let app = snapnest_lambda::runtime::init().await?;
    lambda_http::run(create_backup::router(app)).await
}
