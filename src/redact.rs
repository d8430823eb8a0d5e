//! The workspace's one redactor of Redis URLs: every `Debug`, error and log
//! line of the library, `sandboxctl` and `sandbox-api` that shows a URL
//! shows [`redact_url`]'s rendering of it, so a password never reaches an
//! operator's terminal or a log pipeline.
//!
//! It works on the text, not on a parsed URL: the URLs it must hide
//! passwords in are often the ones that do not parse (an invalid-URL error
//! shows its input), and a password may hold `/`, `?`, `#` or `@` unencoded.
//! Where the text is ambiguous it hides too much rather than too little.

/// What a hidden secret is replaced with.
const HIDDEN: &str = "<redacted>";

/// Query parameters whose value is a secret (`redis+unix:///s.sock?pass=…`).
const SECRET_PARAMS: &[&str] = &["pass", "password"];

/// `url` with every password in it replaced by `<redacted>`, for messages:
///
/// - the userinfo's password (`redis://user:pass@host` →
///   `redis://user:<redacted>@host`; a userinfo without `:` is hidden
///   whole). The userinfo runs to the *last* `@`, so a password with `/`,
///   `?`, `#` or `@` in it is hidden whole; a URL whose authority is empty
///   (`redis+unix:///path`) has none;
/// - the value of every `pass=` / `password=` query parameter (any URL
///   form, keys matched without regard to case), up to the next `&`.
///
/// Text without `://` is treated the same way (everything before its last
/// `@` is hidden), so a mistyped URL in an error does not leak either.
///
/// ```
/// use sandbox_coordinator::redact_url;
/// assert_eq!(
///     redact_url("redis://coord:s3cret@10.0.0.1:6379/0"),
///     "redis://coord:<redacted>@10.0.0.1:6379/0"
/// );
/// assert_eq!(
///     redact_url("redis+unix:///run/redis.sock?user=coord&pass=s3cret&db=1"),
///     "redis+unix:///run/redis.sock?user=coord&pass=<redacted>&db=1"
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let (userinfo, location) = match rest.rsplit_once('@') {
        // An empty authority (`redis+unix:///path`): an `@` further on is
        // in the path or the query, not a userinfo.
        Some(_) if scheme.is_some() && rest.starts_with('/') => (None, rest),
        Some((userinfo, location)) => (Some(userinfo), location),
        None => (None, rest),
    };
    let mut out = String::with_capacity(url.len());
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    match userinfo.map(|u| u.split_once(':')) {
        // Without a scheme the text's shape is unknown: hide it all.
        Some(Some((user, _))) if scheme.is_some() => {
            out.push_str(user);
            out.push(':');
            out.push_str(HIDDEN);
            out.push('@');
        }
        Some(_) => {
            out.push_str(HIDDEN);
            out.push('@');
        }
        None => {}
    }
    match location.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            out.push_str(&redact_query(query));
        }
        None => out.push_str(location),
    }
    out
}

/// A query string with the values of [`SECRET_PARAMS`] hidden.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((key, _))
                if SECRET_PARAMS
                    .iter()
                    .any(|secret| key.eq_ignore_ascii_case(secret)) =>
            {
                format!("{key}={HIDDEN}")
            }
            _ => param.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    /// `url` redacted, checked not to contain `secret`.
    fn hidden(url: &str, secret: &str) -> String {
        let shown = redact_url(url);
        assert!(!shown.contains(secret), "{url} shown as {shown}");
        shown
    }

    #[test]
    fn a_userinfo_password_is_hidden() {
        assert_eq!(
            hidden("redis://coord:s3cret@host:6379/0", "s3cret"),
            "redis://coord:<redacted>@host:6379/0"
        );
        assert_eq!(
            hidden("rediss://:s3cret@host", "s3cret"),
            "rediss://:<redacted>@host"
        );
        assert_eq!(
            hidden("redis://s3cret@host", "s3cret"),
            "redis://<redacted>@host"
        );
    }

    #[test]
    fn a_password_with_url_delimiters_is_hidden_whole() {
        assert_eq!(
            hidden("redis://coord:s3/c?r#t@127.0.0.1:6379", "s3/c"),
            "redis://coord:<redacted>@127.0.0.1:6379"
        );
        let shown = hidden("rediss://coord:a@b?c#d/e@host:6380/1?x=y", "a@b");
        assert_eq!(shown, "rediss://coord:<redacted>@host:6380/1?x=y");
        assert!(!shown.contains("c#d/e"), "{shown}");
    }

    #[test]
    fn a_pass_query_parameter_is_hidden_in_any_url_form() {
        assert_eq!(
            hidden(
                "redis+unix:///tmp/s.sock?user=coord&pass=s3cret&db=1",
                "s3cret"
            ),
            "redis+unix:///tmp/s.sock?user=coord&pass=<redacted>&db=1"
        );
        assert_eq!(
            hidden("unix:///tmp/s.sock?password=s3cret", "s3cret"),
            "unix:///tmp/s.sock?password=<redacted>"
        );
        assert_eq!(
            hidden("redis://host:6379/0?PASS=s3cret", "s3cret"),
            "redis://host:6379/0?PASS=<redacted>"
        );
        assert_eq!(
            hidden("redis://u:p1@host/0?pass=p2", "p2"),
            "redis://u:<redacted>@host/0?pass=<redacted>"
        );
    }

    #[test]
    fn an_at_sign_in_a_unix_socket_query_does_not_expose_its_password() {
        let shown = hidden(
            "redis+unix:///tmp/s.sock?user=me@corp&pass=s3cret",
            "s3cret",
        );
        assert_eq!(
            shown,
            "redis+unix:///tmp/s.sock?user=me@corp&pass=<redacted>"
        );
    }

    #[test]
    fn text_that_is_not_a_url_keeps_its_secrets_too() {
        assert_eq!(
            hidden("redis:/coord:s3cret@host:6379", "s3cret"),
            "<redacted>@host:6379"
        );
        assert_eq!(
            hidden("host:6379?pass=s3cret", "s3cret"),
            "host:6379?pass=<redacted>"
        );
        assert_eq!(redact_url(""), "");
    }

    #[test]
    fn urls_without_secrets_are_unchanged() {
        for url in [
            "redis://host:6379",
            "redis://host:6379/2?protocol=resp3",
            "redis+unix:///tmp/r.sock",
            "redis+unix:///tmp/r.sock?db=1&user=coord",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn a_userinfo_without_a_colon_is_hidden_whole() {
        // `redis://name@host` names a user, but a password pasted there by
        // mistake must not show either.
        assert_eq!(
            redact_url("rediss://coord@host:6380"),
            "rediss://<redacted>@host:6380"
        );
    }
}
