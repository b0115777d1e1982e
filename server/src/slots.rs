//! The rule that keeps indices across a reload.
//!
//! Token records store small indices instead of names: a client's
//! [`ropc_core::ClientIndex`], a scope's bit, a user's
//! [`ropc_core::UserRef`]. So a reload must give every name it keeps the
//! index it had, and must never give a removed name's index to anyone
//! else (its tokens would come back to life under the wrong name). The
//! scopes, the clients and the users all follow this one rule.

/// Lays out `items` (named by `name`) after `previous`, the names of the
/// previous generation by index (`None` for a slot already retired):
/// every item whose name was there takes its old slot, every other slot of
/// `previous` is retired (`None`), and new items follow in their order.
pub fn carry_over<'p, T>(
    previous: impl IntoIterator<Item = Option<&'p str>>,
    items: Vec<T>,
    name: impl Fn(&T) -> &str,
) -> Vec<Option<T>> {
    // By name (a repeated name: its first item), so that a users file of
    // 100,000 lines is laid out in linear time.
    let mut index = std::collections::HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        index.entry(name(item).to_owned()).or_insert(i);
    }
    let mut items: Vec<Option<T>> = items.into_iter().map(Some).collect();
    let mut order = Vec::with_capacity(items.len());
    for old in previous {
        let at = old.and_then(|old| index.get(old).copied());
        order.push(at.and_then(|at| items[at].take()));
    }
    order.extend(items.into_iter().flatten().map(Some));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_names_keep_their_slot_removed_ones_retire_and_new_ones_follow() {
        let previous = [Some("a"), None, Some("b"), Some("c")];
        let laid = carry_over(previous, vec!["d", "c", "a"], |s| s);
        assert_eq!(laid, [Some("a"), None, None, Some("c"), Some("d")]);
        // With no previous generation, the items in their order.
        assert_eq!(carry_over([], vec!["x", "y"], |s| s), [Some("x"), Some("y")]);
        // A name that comes back after its removal gets a new slot.
        let again = carry_over(laid.iter().map(|s| s.as_deref()), vec!["b"], |s| s);
        assert_eq!(again, [None, None, None, None, None, Some("b")]);
    }
}
