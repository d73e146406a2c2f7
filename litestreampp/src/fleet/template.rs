//! Replica templates: one URL pattern gives every database of the fleet its
//! own replica. `{path}` is the database's path relative to the root of the
//! pattern that found it, `{dir}` that path's directory (empty at the root),
//! `{name}` the file name.

use anyhow::{Result, bail};

/// A replica URL template.
#[derive(Debug, Clone)]
pub struct Template(String);

impl Template {
    /// Checks that the template names each database apart (`{path}`, or
    /// `{dir}` with `{name}`) and uses no unknown placeholder.
    pub fn parse(s: &str) -> Result<Template> {
        let mut rest = s;
        while let Some(i) = rest.find('{') {
            let Some(j) = rest[i..].find('}') else {
                bail!("replica template {s:?}: unclosed '{{'");
            };
            let key = &rest[i + 1..i + j];
            if !matches!(key, "path" | "dir" | "name") {
                bail!(
                    "replica template {s:?}: unknown placeholder {{{key}}} (use {{path}}, {{dir}}, {{name}})"
                );
            }
            rest = &rest[i + j + 1..];
        }
        let unique = s.contains("{path}") || (s.contains("{dir}") && s.contains("{name}"));
        if !unique {
            bail!(
                "replica template {s:?}: must contain {{path}} (or {{dir}} and {{name}}) so each database gets its own replica"
            );
        }
        Ok(Template(s.to_string()))
    }

    /// The replica URL of the database at `rel` (relative to its pattern's
    /// root, `/`-separated).
    pub fn expand(&self, rel: &str) -> String {
        let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let s = self
            .0
            .replace("{path}", rel)
            .replace("{dir}", dir)
            .replace("{name}", name);
        // An empty {dir} must not leave "//" in the path (the query, with
        // its endpoint URL, stays as it is).
        let (url, query) = match s.split_once('?') {
            Some((u, q)) => (u, Some(q)),
            None => (s.as_str(), None),
        };
        let (scheme, tail) = match url.split_once("://") {
            Some((sc, t)) => (Some(sc), t),
            None => (None, url),
        };
        let mut out = String::with_capacity(s.len());
        if let Some(sc) = scheme {
            out.push_str(sc);
            out.push_str("://");
        }
        let mut prev_slash = false;
        for c in tail.chars() {
            if c == '/' && prev_slash {
                continue;
            }
            prev_slash = c == '/';
            out.push(c);
        }
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn expands_and_checks() {
        let t = Template::parse("s3://bkt/backups/{path}?endpoint=http://x:1").unwrap();
        assert_eq!(
            t.expand("t1/app.db"),
            "s3://bkt/backups/t1/app.db?endpoint=http://x:1"
        );
        let t = Template::parse("file:///r/{dir}/{name}-replica").unwrap();
        assert_eq!(t.expand("a/b/x.db"), "file:///r/a/b/x.db-replica");
        assert_eq!(t.expand("x.db"), "file:///r/x.db-replica");
        assert!(Template::parse("file:///r/one").is_err());
        assert!(Template::parse("file:///r/{name}").is_err());
        assert!(Template::parse("file:///r/{tenant}/{path}").is_err());
        assert!(Template::parse("file:///r/{path").is_err());
    }
}
