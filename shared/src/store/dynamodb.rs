//! (being written)
pub struct DynamoStore;
impl DynamoStore {
    pub async fn from_env(_t: &str) -> crate::store::embedded::EmbeddedStore {
        unimplemented!()
    }
}
