//! A point in the event log's total order.

use std::fmt;

/// `(transaction_id, global_position)`: the order events are read and audited in.
///
/// `global_position` alone is allocation order, not commit order: a transaction that
/// allocated position 5 may commit after one that allocated 6. Ordering by the writing
/// transaction first, and reading only transactions older than every one still running,
/// gives an order in which nothing can appear behind a reader's back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub transaction_id: u64,
    pub global_position: i64,
}

impl Position {
    pub const ZERO: Position = Position {
        transaction_id: 0,
        global_position: 0,
    };

    /// From the `transaction_id::text` form sqlx can read (it has no `xid8` type).
    pub fn from_db(transaction_id: &str, global_position: i64) -> Result<Self, String> {
        let transaction_id = transaction_id
            .parse()
            .map_err(|_| format!("bad xid8 `{transaction_id}`"))?;
        Ok(Self {
            transaction_id,
            global_position,
        })
    }

    /// The `xid8` as text, for binding as `$n::text::xid8`.
    pub fn transaction_text(&self) -> String {
        self.transaction_id.to_string()
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.transaction_id, self.global_position)
    }
}
