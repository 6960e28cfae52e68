//! Operations of one kind run as one statement: while a statement is at the server,
//! the claims (or settlements) that arrive wait, and go together in the next one. A
//! statement costs the server about the same for one row as for a few dozen, so under
//! load the server's work per message falls with the group's size, and a lone message
//! waits for no one (its group is itself).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::super::StoreError;

/// The most operations one statement carries: enough that the server's work per
/// message stops falling, few enough that one statement stays short.
pub(super) const MOST: usize = 64;

/// An operation waiting for its group, and where its row goes.
struct Waiting<R, T> {
    request: R,
    answer: oneshot::Sender<Result<T, StoreError>>,
}

/// A group's statement: the rows, one per request and in their order, or the error
/// every request of the group gets.
pub(super) type Run<R, T> = Arc<
    dyn Fn(Vec<R>) -> super::super::backend::BoxFuture<'static, Result<Vec<T>, StoreError>>
        + Send
        + Sync,
>;

/// The queue of one kind of operation; its task ends when the last handle goes.
pub(super) struct Grouped<R, T> {
    queue: mpsc::UnboundedSender<Waiting<R, T>>,
}

impl<R, T> Grouped<R, T>
where
    R: Send + 'static,
    T: Send + 'static,
{
    /// Starts the task that runs the groups, one at a time. `keys` names what two
    /// operations of one group must not share (one statement may not touch a row
    /// twice): an operation that shares one waits for the next group.
    pub(super) fn start(keys: fn(&R) -> [&str; 2], run: Run<R, T>) -> Self {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(drive(waiting, keys, run));
        Grouped { queue }
    }

    /// Runs `request` in the next group that can take it; its row.
    pub(super) async fn run(&self, request: R) -> Result<T, StoreError> {
        let (answer, row) = oneshot::channel();
        self.queue
            .send(Waiting { request, answer })
            .map_err(|_| StoreError("the store is closed".into()))?;
        row.await
            .unwrap_or_else(|_| Err(StoreError("the store's statement was dropped".into())))
    }
}

/// Takes every operation waiting, runs those that fit one group, keeps the rest for
/// the next; a caller that gave up (the store's timeout) is left out.
async fn drive<R, T>(
    mut queue: mpsc::UnboundedReceiver<Waiting<R, T>>,
    keys: fn(&R) -> [&str; 2],
    run: Run<R, T>,
) {
    let mut held: VecDeque<Waiting<R, T>> = VecDeque::new();
    loop {
        if held.is_empty() {
            match queue.recv().await {
                Some(waiting) => held.push_back(waiting),
                None => return,
            }
        }
        while let Ok(waiting) = queue.try_recv() {
            held.push_back(waiting);
        }
        let group = take_group(&mut held, keys);
        if group.is_empty() {
            continue;
        }
        let (requests, answers): (Vec<R>, Vec<_>) = group
            .into_iter()
            .map(|waiting| (waiting.request, waiting.answer))
            .unzip();
        let count = requests.len();
        let rows = match tokio::time::timeout(super::super::STORE_TIMEOUT, run(requests)).await {
            Ok(Ok(rows)) if rows.len() == count => Ok(rows),
            Ok(Ok(rows)) => Err(StoreError(format!(
                "a grouped statement gave {} rows for {count} operations",
                rows.len()
            ))),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(StoreError(format!(
                "no answer within {:?}",
                super::super::STORE_TIMEOUT
            ))),
        };
        match rows {
            Ok(rows) => {
                for (answer, row) in answers.into_iter().zip(rows) {
                    let _ = answer.send(Ok(row));
                }
            }
            Err(err) => {
                for answer in answers {
                    let _ = answer.send(Err(StoreError(err.0.clone())));
                }
            }
        }
    }
}

/// The operations of the next group, in the order they came, taken from `held`: at
/// most [`MOST`], none sharing a key with another; those that wait stay in order.
fn take_group<R, T>(
    held: &mut VecDeque<Waiting<R, T>>,
    keys: fn(&R) -> [&str; 2],
) -> Vec<Waiting<R, T>> {
    let mut group = Vec::new();
    let mut taken: HashSet<String> = HashSet::new();
    let mut later = VecDeque::new();
    while let Some(waiting) = held.pop_front() {
        if waiting.answer.is_closed() {
            continue;
        }
        let own = keys(&waiting.request);
        if group.len() == MOST || own.iter().any(|key| taken.contains(*key)) {
            later.push_back(waiting);
            continue;
        }
        taken.extend(own.iter().map(|key| (*key).to_owned()));
        group.push(waiting);
    }
    *held = later;
    group
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(key: &'static str, push_key: &'static str) -> Waiting<[&'static str; 2], ()> {
        Waiting {
            request: [key, push_key],
            answer: oneshot::channel().0,
        }
    }

    #[test]
    fn a_group_shares_no_key_and_those_left_keep_their_order() {
        // Senders whose receivers are gone count as given up: keep the receivers.
        let mut receivers = Vec::new();
        let mut held: VecDeque<_> = [("a", "p1"), ("b", "p1"), ("a", "p2"), ("c", "p3")]
            .into_iter()
            .map(|(key, push_key)| {
                let (answer, receiver) = oneshot::channel::<Result<(), StoreError>>();
                receivers.push(receiver);
                Waiting {
                    request: [key, push_key],
                    answer,
                }
            })
            .collect();
        let group = take_group(&mut held, |request| *request);
        let requests: Vec<_> = group.iter().map(|waiting| waiting.request).collect();
        assert_eq!(requests, [["a", "p1"], ["c", "p3"]]);
        let left: Vec<_> = held.iter().map(|waiting| waiting.request).collect();
        assert_eq!(left, [["b", "p1"], ["a", "p2"]]);
        // One whose caller gave up is left out altogether.
        let mut given_up: VecDeque<_> = [waiting("d", "p4")].into_iter().collect();
        assert!(take_group(&mut given_up, |request| *request).is_empty());
        assert!(given_up.is_empty());
    }

    #[test]
    fn a_group_holds_at_most_the_most() {
        let mut receivers = Vec::new();
        let keys: Vec<String> = (0..MOST + 3).map(|n| n.to_string()).collect();
        let mut held: VecDeque<_> = keys
            .iter()
            .map(|key| {
                let (answer, receiver) = oneshot::channel::<Result<(), StoreError>>();
                receivers.push(receiver);
                Waiting {
                    request: key.as_str(),
                    answer,
                }
            })
            .collect();
        assert_eq!(take_group(&mut held, |key| [*key, *key]).len(), MOST);
        assert_eq!(held.len(), 3);
    }
}
