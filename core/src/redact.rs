//! The one redactor: what every log line, status field and error message
//! that shows a replica URL passes it through, so credentials never reach
//! a log.
//!
//! It works on the text, not on a parsed URL, so a URL that does not parse
//! (a typo, a space, a template) is redacted by the same rules instead of
//! being printed as written or replaced by nothing useful.

use std::borrow::Cow;

/// What a masked value is replaced with.
pub const MASK: &str = "REDACTED";

/// Words that mark a query parameter as a secret (matched in the
/// lower-cased, percent-decoded name).
const SECRET_WORDS: &[&str] = &[
    "secret",
    "key",
    "token",
    "password",
    "passwd",
    "credential",
    "signature",
    "sig",
    "auth",
];

/// A credential held in memory: its `Debug` and `Display` show [`MASK`],
/// so printing a struct that holds one never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The value itself, for the one place that compares or sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(MASK)
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(MASK)
    }
}

/// `url` without user info (`user:password@`) and with the values of
/// secret-looking query parameters replaced by [`MASK`]. Anything else is
/// kept as written.
pub fn redact_url(url: &str) -> String {
    let (head, query_and_fragment) = match url.find('?') {
        Some(i) => (&url[..i], Some(&url[i + 1..])),
        None => (url, None),
    };
    let mut out = String::with_capacity(url.len());
    match head.find("://") {
        Some(i) => {
            out.push_str(&head[..i + 3]);
            out.push_str(without_user_info(&head[i + 3..]));
        }
        None => out.push_str(head),
    }
    if let Some(qf) = query_and_fragment {
        let (query, fragment) = match qf.find('#') {
            Some(i) => (&qf[..i], Some(&qf[i..])),
            None => (qf, None),
        };
        out.push('?');
        for (n, pair) in query.split('&').enumerate() {
            if n > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((k, _)) if is_secret_name(k) => {
                    out.push_str(k);
                    out.push('=');
                    out.push_str(MASK);
                }
                _ => out.push_str(pair),
            }
        }
        if let Some(f) = fragment {
            out.push_str(f);
        }
    }
    out
}

/// `text` with every URL in it (a run of non-blank characters holding
/// `://`) passed through [`redact_url`]: for messages of libraries that
/// quote the request they made, an Azure SAS token and all.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let start = rest[..i]
            .rfind(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '(' | '<' | '='))
            .map_or(0, |k| k + 1);
        let end = rest[i..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ')' | '>' | ','))
            .map_or(rest.len(), |k| i + k);
        out.push_str(&rest[..start]);
        out.push_str(&redact_url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// What follows `scheme://`, without user info. The host follows the
/// last '@' of the authority (user info may itself hold '@'). A password
/// holding an unencoded '/' (AWS secret keys often do) ends the authority
/// early, so a `user:...@` before the first '@' of the rest is dropped
/// too: a path with an '@' may then lose its start, which is better than
/// showing a secret.
fn without_user_info(rest: &str) -> &str {
    let authority_end = rest.find(['/', '#']).unwrap_or(rest.len());
    if let Some(at) = rest[..authority_end].rfind('@') {
        return &rest[at + 1..];
    }
    if let Some(at) = rest.find('@')
        && rest[..at]
            .find(':')
            .is_some_and(|colon| colon < authority_end)
    {
        return &rest[at + 1..];
    }
    rest
}

/// True if a parameter or setting called `name` holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    let decoded: Cow<'_, str> = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
    let lower = decoded.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| lower.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_inside_text_are_redacted() {
        let m = "request to https://acct.blob.core.windows.net/c/x?sv=1&sig=SECRETSIG failed (url=http://u:pw@h/p?token=T), retry";
        let r = redact_text(m);
        assert!(
            !r.contains("SECRETSIG") && !r.contains("pw@") && !r.contains("=T)"),
            "{r}"
        );
        assert!(
            r.starts_with("request to https://acct.blob.core.windows.net/c/x?sv=1&sig="),
            "{r}"
        );
        assert!(
            r.ends_with("failed (url=http://h/p?token=REDACTED), retry"),
            "{r}"
        );
        assert_eq!(redact_text("no urls here"), "no urls here");
    }

    fn check(url: &str, want: &str) {
        assert_eq!(redact_url(url), want, "{url}");
    }

    #[test]
    fn masks_credentials_wherever_they_are() {
        check(
            "s3://AKIA:pw@bucket/path?region=x&secret-access-key=abc",
            "s3://bucket/path?region=x&secret-access-key=REDACTED",
        );
        check(
            "s3://bucket/p?access-key-id=AKIA&token=t&password=p&endpoint=http://h:9",
            "s3://bucket/p?access-key-id=REDACTED&token=REDACTED&password=REDACTED&endpoint=http://h:9",
        );
        check(
            "abs://acct@container/p?sv=1&sig=abc%2F#frag",
            "abs://container/p?sv=1&sig=REDACTED#frag",
        );
        // Percent-encoded names are still recognised.
        check("s3://b/p?secret%2Dkey=x", "s3://b/p?secret%2Dkey=REDACTED");
        // A URL that does not parse is redacted all the same.
        check(
            "s3://us er:p@ss@buck et/p?secret-access-key=abc def",
            "s3://buck et/p?secret-access-key=REDACTED",
        );
        check("sftp://u:pw@host:22/x", "sftp://host:22/x");
        check("s3://AKIA:ab/cd+ef@bucket/db", "s3://bucket/db");
        check("file:///data/a@b.db", "file:///data/a@b.db");
        check("s3://bucket/tenant@x/db", "s3://bucket/tenant@x/db");
    }

    #[test]
    fn keeps_what_is_not_secret() {
        check("file:///backups/a.db", "file:///backups/a.db");
        check("/plain/path", "/plain/path");
        check("s3://b/p?region=eu-west-1", "s3://b/p?region=eu-west-1");
        check("s3://b/{path}", "s3://b/{path}");
    }
}
