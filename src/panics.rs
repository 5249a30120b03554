//! A caught panic's message. tch reports libtorch's errors by panicking, and cudarc panics when a
//! library it loads at run time is missing, so the crate catches panics at several edges (a run,
//! a CUDA launch, a callback from C++) and turns each into an error that names its cause.

use std::any::Any;

/// The text a panic carried: `panic!("...")` with a literal gives a `&str`, one with arguments
/// a `String`. Any other payload (from `std::panic::panic_any`) has no text to show.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "(a panic with a non-text payload)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::panic_message;
    use std::panic::catch_unwind;

    #[test]
    fn reads_literal_and_formatted_messages() {
        let literal = catch_unwind(|| panic!("a literal")).unwrap_err();
        assert_eq!(panic_message(literal.as_ref()), "a literal");
        let formatted = catch_unwind(|| panic!("formatted {}", 7)).unwrap_err();
        assert_eq!(panic_message(formatted.as_ref()), "formatted 7");
        let other = catch_unwind(|| std::panic::panic_any(7_u8)).unwrap_err();
        assert_eq!(
            panic_message(other.as_ref()),
            "(a panic with a non-text payload)"
        );
    }
}
