//! The `container.valid_volumes` policy: which volume names and bind sources a workflow may mount.
//! Pure code. Patterns are globs in the manner of upstream's gobwas/glob without separators, so `*`
//! also matches `/`; `**` allows everything; an empty list allows nothing. Volumes without a source
//! (anonymous volumes, `-v /data`) are always allowed: they reach nothing outside the container.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::executor::backend::BackendError;

/// A parsed `-v`/`volumes:` entry: `[source:]target[:mode]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    /// A host path (bind) or a volume name; `None` for an anonymous volume.
    pub source: Option<String>,
    /// The path inside the container.
    pub target: String,
    /// `ro`, `rw`, `z`, ... as given.
    pub mode: Option<String>,
}

impl VolumeSpec {
    /// Parses `target`, `source:target` or `source:target:mode`.
    pub fn parse(spec: &str) -> Result<VolumeSpec, BackendError> {
        let parts: Vec<&str> = spec.split(':').collect();
        let invalid = || BackendError::Policy(format!("invalid volume specification `{spec}`"));
        let volume = match parts.as_slice() {
            [target] => VolumeSpec {
                source: None,
                target: target.to_string(),
                mode: None,
            },
            [source, target] => VolumeSpec {
                source: Some(source.to_string()),
                target: target.to_string(),
                mode: None,
            },
            [source, target, mode] => VolumeSpec {
                source: Some(source.to_string()),
                target: target.to_string(),
                mode: Some(mode.to_string()),
            },
            _ => return Err(invalid()),
        };
        if volume.target.is_empty() || volume.source.as_deref() == Some("") {
            return Err(invalid());
        }
        Ok(volume)
    }

    /// True when the source is a host path rather than a volume name.
    pub fn is_bind(&self) -> bool {
        self.source
            .as_deref()
            .is_some_and(|source| source.starts_with('/') || source.starts_with('.'))
    }

    /// The Docker `Binds` form, `source:target[:mode]`; `None` for an anonymous volume.
    pub fn to_bind(&self) -> Option<String> {
        let source = self.source.as_deref()?;
        Some(match &self.mode {
            Some(mode) => format!("{source}:{}:{mode}", self.target),
            None => format!("{source}:{}", self.target),
        })
    }
}

/// Docker's two places for volumes: `HostConfig.Binds` (`source:target[:mode]`) and the
/// anonymous volumes' targets (`Config.Volumes`).
pub fn binds_and_anonymous(volumes: &[VolumeSpec]) -> (Vec<String>, Vec<String>) {
    let binds = volumes.iter().filter_map(VolumeSpec::to_bind).collect();
    let anonymous = volumes
        .iter()
        .filter(|volume| volume.source.is_none())
        .map(|volume| volume.target.clone())
        .collect();
    (binds, anonymous)
}

/// The compiled allow-list.
#[derive(Debug, Clone)]
pub struct VolumePolicy {
    globs: GlobSet,
}

impl VolumePolicy {
    /// Compiles the patterns; a bad pattern is a configuration error naming it.
    pub fn new(patterns: &[String]) -> Result<VolumePolicy, BackendError> {
        let mut builder = GlobSetBuilder::new();
        for pattern in patterns {
            let glob = GlobBuilder::new(pattern)
                .literal_separator(false)
                .build()
                .map_err(|err| {
                    BackendError::Policy(format!(
                        "invalid container.valid_volumes pattern `{pattern}`: {err}"
                    ))
                })?;
            builder.add(glob);
        }
        let globs = builder.build().map_err(|err| {
            BackendError::Policy(format!("invalid container.valid_volumes: {err}"))
        })?;
        Ok(VolumePolicy { globs })
    }

    /// Whether a volume may be mounted.
    pub fn allows(&self, volume: &VolumeSpec) -> bool {
        match &volume.source {
            None => true,
            Some(source) => self.globs.is_match(source),
        }
    }
}

/// Splits volumes into the allowed ones and a warning for each refused one.
pub fn filter_volumes(
    policy: &VolumePolicy,
    volumes: &[VolumeSpec],
) -> (Vec<VolumeSpec>, Vec<String>) {
    let mut allowed = Vec::new();
    let mut warnings = Vec::new();
    for volume in volumes {
        if policy.allows(volume) {
            allowed.push(volume.clone());
        } else {
            warnings.push(format!(
                "volume `{}` is not allowed by container.valid_volumes and is not mounted",
                volume.source.as_deref().unwrap_or_default()
            ));
        }
    }
    (allowed, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(patterns: &[&str], spec: &str, expect_allowed: bool) {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        let policy = VolumePolicy::new(&patterns).unwrap();
        let volume = VolumeSpec::parse(spec).unwrap();
        assert_eq!(
            policy.allows(&volume),
            expect_allowed,
            "{patterns:?} vs {spec}"
        );
    }

    #[test]
    fn empty_list_allows_no_named_volume_or_bind() {
        check(&[], "data:/data", false);
        check(&[], "/etc:/host-etc", false);
    }

    #[test]
    fn anonymous_volume_is_always_allowed() {
        check(&[], "/scratch", true);
    }

    #[test]
    fn double_star_allows_everything() {
        check(&["**"], "/etc:/host-etc:ro", true);
        check(&["**"], "data:/data", true);
    }

    #[test]
    fn single_star_crosses_slashes_as_upstream() {
        check(&["/srv/*"], "/srv/a/b:/x", true);
        check(&["/srv/*"], "/etc/passwd:/x", false);
    }

    #[test]
    fn exact_name_matches_only_itself() {
        check(&["cache-volume"], "cache-volume:/cache", true);
        check(&["cache-volume"], "other:/cache", false);
    }

    #[test]
    fn bad_pattern_is_reported_by_name() {
        let err = VolumePolicy::new(&["[".to_string()]).unwrap_err();
        assert!(err.to_string().contains("`[`"), "{err}");
    }

    #[test]
    fn parse_rejects_too_many_colons_and_empty_parts() {
        assert!(VolumeSpec::parse("a:b:c:d").is_err());
        assert!(VolumeSpec::parse(":/x").is_err());
        assert!(VolumeSpec::parse("").is_err());
    }

    #[test]
    fn bind_form_keeps_mode() {
        let volume = VolumeSpec::parse("/src:/dst:ro").unwrap();
        assert!(volume.is_bind());
        assert_eq!(volume.to_bind().as_deref(), Some("/src:/dst:ro"));
    }

    #[test]
    fn filter_reports_each_refused_volume() {
        let policy = VolumePolicy::new(&["/ok/**".to_string()]).unwrap();
        let volumes = ["/ok/a:/a", "/no:/b", "/c"].map(|s| VolumeSpec::parse(s).unwrap());
        let (allowed, warnings) = filter_volumes(&policy, &volumes);
        assert_eq!(allowed.len(), 2);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("/no"));
    }
}
