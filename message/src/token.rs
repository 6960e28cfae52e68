//! What an endpoint's secret token may be: the one rule `cmq-host --token` and the SDK's
//! wasi-http entrance (`CMQ_TOKEN`) both hold a token to.

/// Shortest token accepted: 16 characters is about 95 bits from a random alphanumeric
/// generator, beyond guessing over HTTP.
pub const MIN_TOKEN_LEN: usize = 16;

/// Whether `token` may protect an endpoint: at least [`MIN_TOKEN_LEN`] characters, each a
/// letter, a digit or one of `-._~` (it goes in a URL unescaped). The reason, when not,
/// never quotes the token.
pub fn check_token(token: &str) -> Result<(), &'static str> {
    if token.chars().count() < MIN_TOKEN_LEN {
        return Err("the token must be at least 16 characters");
    }
    if !token
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
    {
        return Err("the token may hold only letters, digits and - . _ ~ (it goes in a URL)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_and_url_safe() {
        assert!(check_token("s3cret-token-0123456789").is_ok());
        assert!(check_token("a.b_c~d-0123456789").is_ok());
        assert!(check_token("short").is_err());
        assert!(check_token("has space in it 0123").is_err());
        assert!(check_token("percent%20encoded-0123").is_err());
    }
}
