//! What a step's `uses:` names: a local action (`./path`), a docker image (`docker://image`), or a
//! remote action (`owner/repo[/path]@ref`, or `https://host/owner/repo[/path]@ref` as Gitea
//! accepts), with the URL `git` fetches it from.

/// A parsed `uses:` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionRef {
    /// `./path`, relative to the workspace.
    Local(String),
    /// `docker://image`.
    Docker(String),
    Remote(RemoteAction),
}

/// A remote action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteAction {
    /// The repository URL, e.g. `https://github.com/actions/checkout`.
    pub url: String,
    /// `owner/repo` (`GITHUB_ACTION_REPOSITORY`).
    pub repository: String,
    /// The action's directory inside the repository (empty: its root).
    pub path: String,
    /// `GITHUB_ACTION_REF`: a branch, tag or commit SHA.
    pub git_ref: String,
}

impl ActionRef {
    /// Parses `uses` (already interpolated); bare `owner/repo@ref` resolves against
    /// `default_url`. Errors say what a valid value looks like.
    pub fn parse(uses: &str, default_url: &str) -> Result<ActionRef, String> {
        let uses = uses.trim();
        if let Some(path) = uses.strip_prefix("./") {
            return Ok(ActionRef::Local(path.trim_end_matches('/').to_string()));
        }
        if let Some(image) = uses.strip_prefix("docker://") {
            if image.is_empty() {
                return Err(String::from(
                    "`docker://` needs an image, e.g. `docker://alpine:3`",
                ));
            }
            return Ok(ActionRef::Docker(image.to_string()));
        }
        let expected = "expected `./path`, `docker://image`, `owner/repo[/path]@ref` or `https://host/owner/repo[/path]@ref`";
        let Some((location, git_ref)) = uses.rsplit_once('@') else {
            return Err(format!("`{uses}` has no `@ref`: {expected}"));
        };
        if git_ref.is_empty() {
            return Err(format!("`{uses}` has an empty ref: {expected}"));
        }
        let (base, rest) = match location.split_once("://") {
            Some((scheme, rest)) if scheme == "https" || scheme == "http" => {
                let Some((host, rest)) = rest.split_once('/') else {
                    return Err(format!("`{uses}` names no repository: {expected}"));
                };
                (format!("{scheme}://{host}"), rest)
            }
            Some(_) => return Err(format!("`{uses}`: {expected}")),
            None => (default_url.trim_end_matches('/').to_string(), location),
        };
        let mut parts = rest.trim_matches('/').splitn(3, '/');
        let owner = parts.next().unwrap_or_default();
        let repo = parts.next().unwrap_or_default();
        let path = parts.next().unwrap_or_default();
        if owner.is_empty() || repo.is_empty() || owner == "." || owner == ".." {
            return Err(format!("`{uses}` names no repository: {expected}"));
        }
        if [repo, path]
            .iter()
            .any(|part| part.split('/').any(|c| c == ".."))
        {
            return Err(format!("`{uses}`: `..` may not leave the repository"));
        }
        Ok(ActionRef::Remote(RemoteAction {
            url: format!("{base}/{owner}/{repo}"),
            repository: format!("{owner}/{repo}"),
            path: path.trim_end_matches('/').to_string(),
            git_ref: git_ref.to_string(),
        }))
    }
}

/// The URL with any `user:password@` removed, for messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let host_end = rest.find('/').unwrap_or(rest.len());
    match rest[..host_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// A directory name made of `[A-Za-z0-9._-]` (what upstream puts under `/var/run/act/actions/`).
pub fn safe_name(uses: &str) -> String {
    uses.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(uses: &str) -> RemoteAction {
        match ActionRef::parse(uses, "https://gitea.example/").unwrap() {
            ActionRef::Remote(remote) => remote,
            other => panic!("not remote: {other:?}"),
        }
    }

    #[test]
    fn bare_owner_repo_resolves_against_the_default_url() {
        let action = remote("actions/checkout@v4");
        assert_eq!(action.url, "https://gitea.example/actions/checkout");
        assert_eq!(action.repository, "actions/checkout");
        assert_eq!(action.path, "");
        assert_eq!(action.git_ref, "v4");
    }

    #[test]
    fn a_path_inside_the_repository_is_kept() {
        let action = remote("o/r/sub/dir@main");
        assert_eq!(action.url, "https://gitea.example/o/r");
        assert_eq!(action.path, "sub/dir");
    }

    #[test]
    fn absolute_urls_keep_their_host() {
        let action = remote("https://code.example/o/r/p@0123");
        assert_eq!(action.url, "https://code.example/o/r");
        assert_eq!(action.repository, "o/r");
        assert_eq!(action.path, "p");
    }

    #[test]
    fn local_and_docker_forms() {
        assert_eq!(
            ActionRef::parse("./.github/a/", "x").unwrap(),
            ActionRef::Local(".github/a".into())
        );
        assert_eq!(
            ActionRef::parse("docker://alpine:3", "x").unwrap(),
            ActionRef::Docker("alpine:3".into())
        );
    }

    #[test]
    fn missing_ref_or_repository_is_an_error_saying_what_is_valid() {
        for bad in [
            "actions/checkout",
            "actions@v1",
            "o/r@",
            "docker://",
            "ftp://h/o/r@v",
        ] {
            let error = ActionRef::parse(bad, "https://github.com").unwrap_err();
            assert!(error.contains('`'), "{bad}: {error}");
        }
    }

    #[test]
    fn credentials_are_redacted_from_urls() {
        assert_eq!(
            redact_url("https://user:s3cret@host/o/r"),
            "https://***@host/o/r"
        );
        assert_eq!(redact_url("https://host/o/r@x"), "https://host/o/r@x");
        assert_eq!(redact_url("file:///srv/git"), "file:///srv/git");
    }

    #[test]
    fn safe_names_have_no_slashes() {
        assert_eq!(safe_name("o/r/p@v1"), "o-r-p-v1");
    }
}
