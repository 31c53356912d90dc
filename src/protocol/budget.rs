//! The server-wide budget for bytes held by unfinished messages.
//!
//! A message that does not arrive within one read keeps its buffer until its
//! last fragment comes, and a peer decides how long that is: one client can
//! hold `--max-message-size` for as long as it trickles a byte now and then,
//! and ten thousand clients ten thousand times that. So every connection's
//! unfinished message draws from one budget (`--max-incomplete-bytes`), and
//! a connection whose message would take it past the limit is closed with
//! 1013 (Try Again Later: the server is short of room, not the client at
//! fault; RFC 6455 7.4.1 via the IANA registry).
//!
//! What is counted is the buffer's capacity, what the allocator actually
//! gave, charged after each read (a message that arrives whole within one
//! read is never held and never counted, so small messages cost the budget
//! nothing, not even an atomic add). A [`Charge`] gives its bytes back when
//! it is dropped: when the message completes, fails, or its connection ends
//! in any way.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use thiserror::Error;

/// The close reason sent with 1013 (at most 123 bytes).
pub const OVER_BUDGET_REASON: &str = "server busy: too many unfinished messages";

/// A connection's unfinished message would take the server past its budget;
/// the connection is to be closed with 1013.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unfinished message of {wanted} bytes refused: {held} of {limit} bytes (--max-incomplete-bytes) already held")]
pub struct OverBudget {
    /// Bytes this connection's message would hold.
    pub wanted: usize,
    /// Bytes held by the other unfinished messages at that moment.
    pub held: usize,
    /// The budget.
    pub limit: usize,
}

#[derive(Debug)]
struct Inner {
    limit: usize,
    held: AtomicUsize,
    refused: AtomicU64,
}

/// A handle on one server's budget (cheap to clone).
#[derive(Debug, Clone)]
pub struct IncompleteBudget {
    inner: Arc<Inner>,
}

impl IncompleteBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        IncompleteBudget {
            inner: Arc::new(Inner {
                limit,
                held: AtomicUsize::new(0),
                refused: AtomicU64::new(0),
            }),
        }
    }

    /// No limit (tools and tests that decode without a server).
    pub fn unlimited() -> Self {
        Self::new(usize::MAX)
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Bytes held by unfinished messages now.
    pub fn held(&self) -> usize {
        self.inner.held.load(Ordering::Relaxed)
    }

    /// Messages refused since start (each closed its connection with 1013).
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Takes `bytes` more for `charge`, unless that passes the limit (then
    /// nothing is taken, and the refusal is counted).
    pub(crate) fn grow(&self, charge: &mut Option<Charge>, bytes: usize) -> Result<(), OverBudget> {
        let inner = &self.inner;
        let taken = inner.held.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
            held.checked_add(bytes).filter(|&total| total <= inner.limit)
        });
        match taken {
            Ok(_) => {
                match charge {
                    Some(charge) => charge.bytes += bytes,
                    None => {
                        *charge = Some(Charge {
                            budget: self.clone(),
                            bytes,
                        })
                    }
                }
                Ok(())
            }
            Err(held) => {
                inner.refused.fetch_add(1, Ordering::Relaxed);
                let mine = charge.as_ref().map_or(0, |c| c.bytes);
                Err(OverBudget {
                    wanted: mine + bytes,
                    held: held - mine,
                    limit: inner.limit,
                })
            }
        }
    }
}

/// Bytes one unfinished message holds of the budget; given back on drop.
#[derive(Debug)]
pub(crate) struct Charge {
    budget: IncompleteBudget,
    bytes: usize,
}

impl Charge {
    /// The bytes charged.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.inner.held.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_up_to_the_limit_and_gives_back_on_drop() {
        let budget = IncompleteBudget::new(1000);
        let mut first = None;
        budget.grow(&mut first, 600).unwrap();
        budget.grow(&mut first, 100).unwrap();
        assert_eq!(first.as_ref().map(Charge::bytes), Some(700));
        let mut second = None;
        let refused = budget.grow(&mut second, 301).unwrap_err();
        assert_eq!(
            refused,
            OverBudget {
                wanted: 301,
                held: 700,
                limit: 1000
            }
        );
        assert!(second.is_none(), "a refusal takes nothing");
        assert_eq!(budget.held(), 700);
        assert_eq!(budget.refused(), 1);
        budget.grow(&mut second, 300).unwrap();
        assert_eq!(budget.held(), 1000);
        drop(first);
        assert_eq!(budget.held(), 300);
        drop(second);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_refused_growth_reports_what_the_message_would_hold() {
        let budget = IncompleteBudget::new(100);
        let mut charge = None;
        budget.grow(&mut charge, 60).unwrap();
        let refused = budget.grow(&mut charge, 50).unwrap_err();
        assert_eq!((refused.wanted, refused.held), (110, 0));
        assert_eq!(budget.held(), 60, "what it held stays charged until dropped");
        assert!(OVER_BUDGET_REASON.len() <= 123);
    }
}
