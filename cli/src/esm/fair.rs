//! Fair queues, as closely as a local poller can keep them: SQS fair queues (a message group
//! per tenant on a standard queue) hand out the messages of a group with few messages in flight
//! before those of a group with many, so one group's backlog does not delay the others. The
//! emulator keeps no such order; the deliver pollers of `switchboard dev` share a [`Fair`]
//! look-ahead instead: they receive ahead of what they invoke (up to [`LOOKAHEAD`]) and each
//! batch takes the groups with the fewest messages in flight first, one message per group in
//! turn. A message that has waited [`MAX_WAIT`] (or a quarter of the queue's visibility
//! timeout) is taken first once a poller is free; one still there at half the visibility
//! timeout (every poller busy that long) is let go, to come back from the queue as SQS hands it
//! back, so no copy is ever worked on past its visibility. A queue whose visibility timeout is
//! under a minute (the tests' quick settings) gets a look-ahead of one batch.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};

/// How many received messages the pollers keep ahead of what they invoke (a long visibility).
pub const LOOKAHEAD: usize = 50;
/// The longest a received message waits in the look-ahead.
pub const MAX_WAIT: Duration = Duration::from_secs(2);

/// The look-ahead and the messages in flight by group, shared by a queue's pollers.
#[derive(Debug)]
pub struct Fair {
    state: Mutex<State>,
    max_wait: Duration,
    /// When a message in the look-ahead is let go.
    stale: Duration,
    lookahead: usize,
}

#[derive(Debug, Default)]
struct State {
    waiting: Vec<(Message, Instant)>,
    in_flight: HashMap<String, usize>,
}

/// A message's group (`MessageGroupId`; none is a group of its own kind).
fn group(m: &Message) -> String {
    m.attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
        .cloned()
        .unwrap_or_default()
}

impl Fair {
    /// A look-ahead for a queue whose visibility timeout is `visibility`: nothing waits in it
    /// longer than [`MAX_WAIT`] or a quarter of that, so no message turns visible again there.
    pub fn new(visibility: Duration) -> Self {
        Self {
            state: Mutex::default(),
            max_wait: MAX_WAIT.min(visibility / 4),
            stale: visibility / 2,
            lookahead: if visibility >= Duration::from_secs(60) {
                LOOKAHEAD
            } else {
                10
            },
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many more messages the pollers may receive ahead.
    pub fn room(&self) -> usize {
        self.lookahead.saturating_sub(self.state().waiting.len())
    }

    /// Whether nothing waits in the look-ahead.
    pub fn is_empty(&self) -> bool {
        self.state().waiting.is_empty()
    }

    /// Adds received messages to the look-ahead.
    pub fn add(&self, messages: Vec<Message>) {
        let now = Instant::now();
        self.state()
            .waiting
            .extend(messages.into_iter().map(|m| (m, now)));
    }

    /// The next batch of at most `size`, counted in flight until [`Fair::done`].
    pub fn take(&self, size: usize) -> Vec<Message> {
        let mut state = self.state();
        let stale = self.stale;
        state.waiting.retain(|(_, at)| at.elapsed() < stale);
        let waited: Vec<(String, Duration)> = state
            .waiting
            .iter()
            .map(|(m, at)| (group(m), at.elapsed()))
            .collect();
        let order = pick(&waited, &state.in_flight, size, self.max_wait);
        let mut slots: Vec<Option<(Message, Instant)>> = std::mem::take(&mut state.waiting)
            .into_iter()
            .map(Some)
            .collect();
        let batch: Vec<Message> = order
            .iter()
            .filter_map(|&i| slots[i].take().map(|(m, _)| m))
            .collect();
        state.waiting = slots.into_iter().flatten().collect();
        for m in &batch {
            *state.in_flight.entry(group(m)).or_default() += 1;
        }
        batch
    }

    /// The batch's messages are no longer in flight.
    pub fn done(&self, batch: &[Message]) {
        let mut state = self.state();
        for m in batch {
            if let Some(n) = state.in_flight.get_mut(&group(m)) {
                *n = n.saturating_sub(1);
            }
        }
    }
}

/// Which of the waiting messages (their group and how long they waited, oldest first) the next
/// batch of `size` takes: those that waited `max_wait` first, then the groups in order of their
/// messages in flight (fewest first), one message per group in turn, each group's oldest first.
pub fn pick(
    waiting: &[(String, Duration)],
    in_flight: &HashMap<String, usize>,
    size: usize,
    max_wait: Duration,
) -> Vec<usize> {
    let mut chosen: Vec<usize> = (0..waiting.len())
        .filter(|&i| waiting[i].1 >= max_wait)
        .take(size)
        .collect();
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, (g, _)) in waiting.iter().enumerate() {
        if chosen.contains(&i) {
            continue;
        }
        match groups.iter_mut().find(|(name, _)| name == g) {
            Some((_, members)) => members.push(i),
            None => groups.push((g, vec![i])),
        }
    }
    // Stable: among groups as busy, the one whose oldest message came first.
    groups.sort_by_key(|(g, _)| in_flight.get(*g).copied().unwrap_or(0));
    let mut turn = 0;
    while chosen.len() < size && groups.iter().any(|(_, m)| turn < m.len()) {
        for (_, members) in &groups {
            if chosen.len() < size && turn < members.len() {
                chosen.push(members[turn]);
            }
        }
        turn += 1;
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(groups: &str) -> Vec<(String, Duration)> {
        groups
            .chars()
            .map(|g| (g.to_string(), Duration::ZERO))
            .collect()
    }

    #[test]
    fn a_group_with_a_backlog_does_not_keep_another_waiting() {
        // Nine of `s` ahead of one of `f`: `f` goes in the first batch of three.
        let w = waiting("sssssssssf");
        assert_eq!(pick(&w, &HashMap::new(), 3, MAX_WAIT), [0, 9, 1]);
        // `s` already busy: `f` first, then `s` in turn.
        let busy = HashMap::from([("s".to_string(), 4)]);
        assert_eq!(pick(&w, &busy, 3, MAX_WAIT), [9, 0, 1]);
        // A batch fills up from one group when it is the only one waiting.
        assert_eq!(pick(&waiting("sss"), &busy, 10, MAX_WAIT), [0, 1, 2]);
    }

    #[test]
    fn a_short_visibility_keeps_one_batch_ahead_and_lets_a_stale_message_go() {
        let fair = Fair::new(Duration::from_millis(40));
        assert_eq!(fair.room(), 10);
        fair.add(vec![Message::builder().message_id("m").build()]);
        assert_eq!(fair.room(), 9);
        std::thread::sleep(Duration::from_millis(25));
        assert!(fair.take(10).is_empty(), "past half its visibility: let go");
        assert!(fair.is_empty());
        assert_eq!(Fair::new(Duration::from_secs(180)).room(), LOOKAHEAD);
    }

    #[test]
    fn what_waited_too_long_goes_first_and_nothing_is_taken_twice() {
        let mut w = waiting("ssf");
        w[1].1 = MAX_WAIT;
        let busy = HashMap::from([("s".to_string(), 9)]);
        assert_eq!(pick(&w, &busy, 2, MAX_WAIT), [1, 2]);
        assert_eq!(
            pick(&waiting("abcabcaaa"), &HashMap::new(), 20, MAX_WAIT),
            [0, 1, 2, 3, 4, 5, 6, 7, 8]
        );
    }
}
