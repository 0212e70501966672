//! The memory table's review items (`ReviewStore`), judged as the DynamoDB adapter's
//! conditions judge them.

use switchboard_core::ports::{PortError, ReviewStore};
use switchboard_core::review::{ReviewItem, ReviewStatus};

use super::{MemoryTable, lock};

impl ReviewStore for MemoryTable {
    async fn create_review(&self, item: &ReviewItem) -> Result<bool, PortError> {
        let mut reviews = lock(&self.reviews);
        if reviews.contains_key(&item.id) {
            return Ok(false);
        }
        reviews.insert(item.id.clone(), item.clone());
        Ok(true)
    }

    async fn review(&self, id: &str) -> Result<Option<ReviewItem>, PortError> {
        Ok(lock(&self.reviews).get(id).cloned())
    }

    async fn update_review(&self, item: &ReviewItem) -> Result<bool, PortError> {
        let mut reviews = lock(&self.reviews);
        match reviews.get(&item.id) {
            Some(stored) if stored.version + 1 == item.version => {
                reviews.insert(item.id.clone(), item.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn reviews(&self, status: ReviewStatus) -> Result<Vec<ReviewItem>, PortError> {
        let mut items: Vec<ReviewItem> = lock(&self.reviews)
            .values()
            .filter(|i| i.status == status)
            .cloned()
            .collect();
        items.sort_by_key(|i| i.created_at);
        Ok(items)
    }
}
