//! How messages are grouped into a queue's batch requests: SQS takes at most ten entries, and
//! 1 MiB of bodies in all, per SendMessageBatch (1 MiB per message and per batch since August
//! 2025; moto enforces the same).

use std::ops::Range;

/// SQS's limit on one message, and on the bodies of one batch request together.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// At most this many entries per batch request.
pub const MAX_ENTRIES: usize = 10;

/// Groups messages (by body size, in order) into requests of at most [`MAX_ENTRIES`] entries
/// and [`MAX_REQUEST_BYTES`] in all. A message over the limit alone is a group of its own (SQS
/// refuses it, and the caller says so).
pub fn by_size(sizes: &[usize]) -> Vec<Range<usize>> {
    let mut groups = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, &size) in sizes.iter().enumerate() {
        let full = i - start == MAX_ENTRIES || bytes + size > MAX_REQUEST_BYTES;
        if i > start && full {
            groups.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < sizes.len() {
        groups.push(start..sizes.len());
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::single_range_in_vec_init)]
    fn batches_hold_ten_messages_and_a_mebibyte_at_most() {
        const KIB: usize = 1024;
        let none: Vec<Range<usize>> = Vec::new();
        for (sizes, expected) in [
            (vec![], none),
            (vec![10; 10], vec![0..10]),
            (vec![10; 11], vec![0..10, 10..11]),
            (vec![400 * KIB; 3], vec![0..2, 2..3]),
            (vec![MAX_REQUEST_BYTES, 1], vec![0..1, 1..2]),
            (vec![1, MAX_REQUEST_BYTES + 1, 1], vec![0..1, 1..2, 2..3]),
            (vec![600 * KIB, 300 * KIB, 200 * KIB], vec![0..2, 2..3]),
        ] {
            assert_eq!(by_size(&sizes), expected, "{sizes:?}");
        }
    }
}
