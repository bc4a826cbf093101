//! How loadgen words an IO error: the OS's message, without the code std appends.

/// An IO error's text without the " (os error N)" suffix the standard library adds: the
/// messages loadgen prints say "Connection refused", as the README shows.
pub fn io_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match (e.raw_os_error(), text.rfind(" (os error ")) {
        (Some(_), Some(at)) if text.ends_with(')') => text[..at].to_string(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OS errors lose their "(os error N)" suffix; other errors keep their text.
    #[test]
    fn io_text_strips_the_os_error_code() {
        let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(io_text(&refused), "Connection refused");
        let custom = std::io::Error::other("no (os error 5) here");
        assert_eq!(io_text(&custom), "no (os error 5) here");
    }
}
