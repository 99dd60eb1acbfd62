//! Containing a component failure to the items that cause it: a batch call
//! first; if it fails, each item again on its own (on a fresh instance after
//! every failure), so only the guilty items get an error. Shared by the
//! validate and dedupe callers.

use leadgate_runtime::CallError;

/// Calls `all` on `items`; on failure drops the instance (`reset`) and calls
/// `one` per item, dropping the instance again after each item that fails.
/// `state` is what the calls need mutably (the caller and its instance).
pub fn isolate<S, T, R>(
    state: &mut S,
    items: &[T],
    all: impl Fn(&mut S, &[T]) -> Result<Vec<R>, CallError>,
    one: impl Fn(&mut S, &T) -> Result<R, CallError>,
    reset: impl Fn(&mut S),
) -> Vec<Result<R, CallError>> {
    if items.is_empty() {
        return Vec::new();
    }
    match all(state, items) {
        Ok(v) => v.into_iter().map(Ok).collect(),
        Err(e) => {
            reset(state);
            if items.len() == 1 {
                return vec![Err(e)];
            }
            items
                .iter()
                .map(|item| {
                    let r = one(state, item);
                    if r.is_err() {
                        reset(state);
                    }
                    r
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_failing_item_gets_the_error_and_each_failure_resets() {
        // State: how many resets happened.
        let mut resets = 0u32;
        let out = isolate(
            &mut resets,
            &[1, 2, 3],
            |_, _| {
                Err(CallError::Trap {
                    message: "batch".into(),
                })
            },
            |_, x| {
                if *x == 2 {
                    Err(CallError::Trap {
                        message: "two".into(),
                    })
                } else {
                    Ok(x * 10)
                }
            },
            |r| *r += 1,
        );
        assert_eq!(out[0], Ok(10));
        assert!(out[1].is_err());
        assert_eq!(out[2], Ok(30));
        assert_eq!(resets, 2, "after the batch and after item 2");
        let empty: Vec<Result<u32, CallError>> = isolate(
            &mut resets,
            &[] as &[u32],
            |_, _| Ok(vec![]),
            |_, x| Ok(*x),
            |_| {},
        );
        assert!(empty.is_empty());
    }
}
